/* Many PAM transactions in one process, as Dovecot's auth worker runs them.
 *
 *   pam_loop SERVICE USER COUNT ANSWER...   (answers are given to prompts in turn,
 *                                            restarting for every transaction)
 *
 * Prints one line per transaction, "<index> <pam result> <VmRSS kB>", so a test can
 * see every result and whether memory grows. Environment: PAM_RHOST sets the remote host.
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct answers { int count; char **values; int next; };

static long rss_kb(void) {
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!status) return -1;
    while (fgets(line, sizeof line, status))
        if (strncmp(line, "VmRSS:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
    fclose(status);
    return kb;
}

static int converse(int n, const struct pam_message **msg, struct pam_response **resp,
                    void *data) {
    struct answers *a = data;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (!r) return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        int style = msg[i]->msg_style;
        if (style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON)
            r[i].resp = strdup(a->next < a->count ? a->values[a->next++] : "");
    }
    *resp = r;
    return PAM_SUCCESS;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: pam_loop SERVICE USER COUNT ANSWER...\n"); return 2; }
    int count = atoi(argv[3]);
    struct answers a = { argc - 4, argv + 4, 0 };
    struct pam_conv conv = { converse, &a };
    const char *rhost = getenv("PAM_RHOST");
    for (int i = 0; i < count; i++) {
        pam_handle_t *pamh = NULL;
        a.next = 0;
        int rc = pam_start(argv[1], argv[2], &conv, &pamh);
        if (rc == PAM_SUCCESS && rhost) pam_set_item(pamh, PAM_RHOST, rhost);
        if (rc == PAM_SUCCESS) rc = pam_authenticate(pamh, 0);
        if (rc == PAM_SUCCESS) rc = pam_acct_mgmt(pamh, 0);
        pam_end(pamh, rc);
        printf("%d %d %ld\n", i, rc, rss_kb());
        fflush(stdout);
    }
    return 0;
}
