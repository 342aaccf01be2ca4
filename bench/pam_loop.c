/* Many PAM transactions in one process, as Dovecot's auth worker runs them.
 *
 *   pam_loop SERVICE USER COUNT ANSWER...   the same user and answers every time
 *   pam_loop SERVICE -                      one transaction per stdin line:
 *                                           USER<TAB>ANSWER<TAB>ANSWER...
 *
 * Answers are given to prompts in turn, restarting for every transaction. Prints one
 * line per transaction: "<index> <pam result> <VmRSS kB> <microseconds>", so callers
 * see every result, whether memory grows, and how long each took.
 * Environment: PAM_RHOST sets the remote host.
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ANSWERS 8

struct answers { int count; char *values[MAX_ANSWERS]; int next; };

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

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
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

static int transaction(const char *service, const char *user, struct answers *a) {
    struct pam_conv conv = { converse, a };
    pam_handle_t *pamh = NULL;
    const char *rhost = getenv("PAM_RHOST");
    a->next = 0;
    int rc = pam_start(service, user, &conv, &pamh);
    if (rc == PAM_SUCCESS && rhost) pam_set_item(pamh, PAM_RHOST, rhost);
    if (rc == PAM_SUCCESS) rc = pam_authenticate(pamh, 0);
    if (rc == PAM_SUCCESS) rc = pam_acct_mgmt(pamh, 0);
    pam_end(pamh, rc);
    return rc;
}

static void report(int index, int rc, long long started) {
    printf("%d %d %ld %lld\n", index, rc, rss_kb(), now_us() - started);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[2], "-") == 0) {
        char line[4096];
        for (int i = 0; fgets(line, sizeof line, stdin); i++) {
            struct answers a = { 0, {0}, 0 };
            line[strcspn(line, "\n")] = '\0';
            char *user = strtok(line, "\t");
            char *answer;
            while (user && a.count < MAX_ANSWERS && (answer = strtok(NULL, "\t")))
                a.values[a.count++] = answer;
            long long started = now_us();
            report(i, user ? transaction(argv[1], user, &a) : PAM_USER_UNKNOWN, started);
        }
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: pam_loop SERVICE USER COUNT ANSWER... | pam_loop SERVICE -\n");
        return 2;
    }
    struct answers a = { 0, {0}, 0 };
    for (int i = 4; i < argc && a.count < MAX_ANSWERS; i++) a.values[a.count++] = argv[i];
    int count = atoi(argv[3]);
    for (int i = 0; i < count; i++) {
        long long started = now_us();
        report(i, transaction(argv[1], argv[2], &a), started);
    }
    return 0;
}
