<?php

/**
 * twostep: two-step sign-in for Roundcube, as a thin client of twostepd.
 *
 * Sign-in goes to twostepd's interactive decision (service "webmail", the browser's
 * address). A new browser of a user with two-step on gets a code page in Roundcube's
 * own look; a trusted browser does not. When the sign-in is accepted twostepd hands
 * over a webmail session credential, and that, never the password, is what Roundcube
 * gives IMAP, SMTP and ManageSieve for the rest of the session. Each page checks the
 * credential is still live (a password change, a disable, "revoke all" end it), and
 * sign-out ends it.
 *
 * The plugin holds no secret of its own, writes nothing to Roundcube's database, and
 * logs no password, code or credential. Any failure to reach twostepd, or any reply it
 * does not expect, refuses the sign-in: it never falls back to the password.
 *
 * State between the password page and the code page travels in the code form itself,
 * encrypted with Roundcube's des_key: Roundcube empties the session before the
 * "authenticate" hook runs, so nothing kept there would survive to the second step.
 */
class twostep extends rcube_plugin
{
    const PENDING_LIFETIME = 270;   // twostepd's continuation lives 300 s
    const DEVICE_COOKIE = 'twostep_device';
    const MAX_CODE = 64;

    private $rc;
    private $client;
    private $credential_in_use = false;
    private $issued = null;

    public function init()
    {
        $this->rc = rcmail::get_instance();
        $this->load_config('config.inc.php.dist');
        $this->load_config();
        $this->add_texts('localization/');
        require_once __DIR__ . '/lib/twostep_client.php';
        $this->client = new twostep_client(
            $this->rc->config->get('twostep_socket', '/run/twostep/twostepd.sock'),
            $this->rc->config->get('twostep_timeout', 15)
        );
        $this->add_hook('startup', [$this, 'startup']);
        $this->add_hook('authenticate', [$this, 'authenticate']);
        $this->add_hook('login_after', [$this, 'login_after']);
        $this->add_hook('session_destroy', [$this, 'session_destroy']);
        $this->add_hook('login_failed', [$this, 'login_failed']);
        $this->add_hook('settings_actions', [$this, 'settings_actions']);
        $this->register_handler('plugin.twostep_code_form', [$this, 'code_form']);
    }

    // -- sign-in ----------------------------------------------------------------------

    public function authenticate($args)
    {
        if (empty($args['valid'])) {
            return $args;    // Roundcube's own request check failed: it says so itself
        }
        $blob = rcube_utils::get_input_string('_twostep', rcube_utils::INPUT_POST);
        if ($blob !== '') {
            return $this->second_step($args, $blob);
        }
        $user = (string) $args['user'];
        $password = (string) $args['pass'];
        if ($user === '' || $password === '') {
            return $args;    // Roundcube refuses an empty form itself
        }
        $reply = $this->ask_auth([
            'user' => $user,
            'password' => $password,
            'device_token' => $this->device_token(),
        ]);
        if ($reply === null) {
            return $this->refuse($args, 'unavailable');
        }
        switch ($reply['result']) {
            case 'accept':
                return $this->accepted($args, $reply, $password);
            case 'challenge':
                $continuation = isset($reply['continuation']) ? $reply['continuation'] : null;
                if (!is_string($continuation)) {
                    return $this->refuse($args, 'unavailable');
                }
                $this->show_code_page($this->seal($user, $continuation), null);
                // show_code_page does not return
            case 'deny':
                return $this->refuse($args, $this->deny_message($reply));
            default:
                return $this->refuse($args, 'unavailable');
        }
    }

    private function second_step($args, $blob)
    {
        $pending = $this->unseal($blob);
        if ($pending === null) {
            return $this->refuse($args, 'expired');
        }
        // the form as sent, not Roundcube's cleaned copy (which drops a NUL and goes on)
        $code = isset($_POST['_code']) && is_string($_POST['_code']) ? trim($_POST['_code']) : '';
        if ($code === '' || strlen($code) > self::MAX_CODE
            || !preg_match('/^[0-9A-Za-z -]+$/', $code)) {
            $this->show_code_page($blob, 'badcode');
        }
        $trust = !empty(rcube_utils::get_input_string('_trust', rcube_utils::INPUT_POST));
        $request = [
            'user' => $pending['u'],
            'password' => '',
            'code' => $code,
            'continuation' => $pending['c'],
        ];
        if ($trust) {
            $request['trust_device'] = true;
            $request['device_label'] = $this->browser_label();
        }
        $reply = $this->ask_auth($request);
        if ($reply === null) {
            return $this->refuse($args, 'unavailable');
        }
        if ($reply['result'] === 'accept') {
            $args['user'] = $pending['u'];
            return $this->accepted($args, $reply, null);
        }
        $reason = isset($reply['reason']) ? $reply['reason'] : '';
        if ($reply['result'] === 'deny' && in_array($reason, ['wrong-code', 'replayed'], true)) {
            $this->show_code_page($blob, 'wrongcode');
        }
        if ($reply['result'] === 'deny' && $reason === 'wrong-password') {
            return $this->refuse($args, 'expired');   // the continuation ran out
        }
        return $this->refuse($args, $reply['result'] === 'deny' ? $this->deny_message($reply) : 'unavailable');
    }

    /** The reply to an interactive sign-in, or null when twostepd could not say. */
    private function ask_auth(array $fields)
    {
        $idle = (int) $this->rc->config->get('session_lifetime', 10) * 60;
        $request = $fields + [
            'op' => 'auth',
            'service' => (string) $this->rc->config->get('twostep_service', 'webmail'),
            'flow' => 'interactive',
            'remote' => (string) rcube_utils::remote_addr(),
            'secured' => rcube_utils::https_check(),
            'mail_session' => true,
            'mail_bind' => implode(',', (array) $this->rc->config->get(
                'twostep_mail_addresses', ['127.0.0.1', '::1']
            )),
            'mail_idle' => max(300, min(86400, $idle)),
        ];
        $request = array_filter($request, function ($v) { return $v !== null && $v !== ''; })
            + ['password' => ''];
        try {
            $reply = $this->client->ask($request);
        } catch (twostep_unavailable $e) {
            rcube::write_log('errors', 'twostep: ' . $e->getMessage());
            return null;
        }
        if (!in_array($reply['result'], ['accept', 'deny', 'challenge'], true)) {
            if ($reply['result'] !== 'tempfail') {
                rcube::write_log('errors', 'twostep: twostepd answered ' . $reply['result']);
            }
            return null;
        }
        return $reply;
    }

    private function accepted($args, array $reply, $password)
    {
        if (isset($reply['user']) && is_string($reply['user']) && $reply['user'] !== '') {
            $args['user'] = $reply['user'];   // the entry's own name
        }
        if (isset($reply['device_token']) && is_string($reply['device_token'])) {
            $this->set_device_cookie($reply['device_token']);
        }
        if (isset($reply['required_from']) && is_int($reply['required_from'])
            && $reply['required_from'] > 0) {
            // shown on the first page after sign-in (startup), once
            $_SESSION['twostep_required_from'] = $reply['required_from'];
        }
        if (isset($reply['mail_credential']) && is_string($reply['mail_credential'])) {
            $args['pass'] = $reply['mail_credential'];
            $this->credential_in_use = true;
            $this->issued = [$args['user'], $reply['mail_credential']];
            // here, not only in login_after: another plugin's login_after may never return
            $_SESSION['twostep_credential'] = true;
            return $args;
        }
        if ($password === null) {
            // accepted with a code, yet no credential: never guess at the password
            return $this->refuse($args, 'unavailable');
        }
        $args['pass'] = $password;   // two-step off, and policy lets the password reach mail
        return $args;
    }

    private function refuse($args, $message)
    {
        $args['abort'] = true;
        $args['error'] = $this->gettext([
            'name' => $message,
            'vars' => ['url' => (string) $this->rc->config->get('twostep_portal_url', '')],
        ]);
        return $args;
    }

    private function deny_message(array $reply)
    {
        $reason = isset($reply['reason']) ? $reply['reason'] : '';
        switch ($reason) {
            case 'locked':
                return 'locked';
            case 'throttled':
            case 'source-throttled':
                return 'throttled';
            case 'enrollment-required':
                return $this->rc->config->get('twostep_portal_url') ? 'enrollportal' : 'enroll';
            default:
                return 'loginfailed';
        }
    }

    public function login_after($args)
    {
        if ($this->credential_in_use) {
            $_SESSION['twostep_credential'] = true;
        }
        return $args;
    }

    // -- the code page ----------------------------------------------------------------

    private function show_code_page($blob, $message)
    {
        $this->pending_blob = $blob;
        $this->rc->output->set_pagetitle($this->gettext('title'));
        if ($message !== null) {
            $this->rc->output->show_message('twostep.' . $message, 'error');
            header('HTTP/1.1 401 Unauthorized');
        }
        $this->rc->output->send('twostep.code');
        exit;
    }

    private $pending_blob = '';

    public function code_form($attrib)
    {
        $hidden = new html_hiddenfield(['name' => '_twostep', 'value' => $this->pending_blob]);
        $code = new html_inputfield([
            'name' => '_code', 'id' => 'twostepcode', 'size' => 20, 'maxlength' => self::MAX_CODE,
            'autocomplete' => 'one-time-code', 'inputmode' => 'text', 'autofocus' => true,
            'required' => true, 'class' => 'form-control', 'data-icon' => 'key',
        ]);
        $trust = new html_checkbox(['name' => '_trust', 'id' => 'twostep-trust', 'value' => '1']);
        $table = new html_table(['cols' => 2]);
        $table->add('title', html::label('twostepcode', rcube::Q($this->gettext('code'))));
        $table->add('input', $code->show());
        $out = $hidden->show()
            . html::p('twostep-hint', rcube::Q($this->gettext('hint')))
            . $table->show()
            . html::p('twostep-trust', $trust->show() . ' '
                . html::label('twostep-trust', rcube::Q($this->gettext('trust'))));
        return $out;
    }

    private function seal($user, $continuation)
    {
        $data = json_encode([
            'u' => $user, 'c' => $continuation, 't' => time(),
            'a' => (string) rcube_utils::remote_addr(),
        ]);
        return (string) $this->rc->encrypt($data);
    }

    private function unseal($blob)
    {
        if (strlen($blob) > 2048) {
            return null;
        }
        $data = $this->rc->decrypt($blob);
        $pending = is_string($data) ? json_decode($data, true, 4) : null;
        if (!is_array($pending) || !isset($pending['u'], $pending['c'], $pending['t'], $pending['a'])
            || !is_string($pending['u']) || !is_string($pending['c']) || !is_int($pending['t'])) {
            return null;
        }
        if (time() - $pending['t'] > self::PENDING_LIFETIME || $pending['t'] > time() + 5
            || $pending['a'] !== (string) rcube_utils::remote_addr()) {
            return null;
        }
        return $pending;
    }

    // -- trusted browsers -------------------------------------------------------------

    private function device_token()
    {
        $token = isset($_COOKIE[self::DEVICE_COOKIE]) ? $_COOKIE[self::DEVICE_COOKIE] : '';
        return is_string($token) && preg_match('/^[A-Za-z0-9._-]{1,128}$/', $token) ? $token : null;
    }

    private function set_device_cookie($token)
    {
        $lifetime = (int) $this->rc->config->get('twostep_device_cookie_lifetime', 90 * 86400);
        rcube_utils::setcookie(self::DEVICE_COOKIE, $token, time() + $lifetime, true);
    }

    private function browser_label()
    {
        $agent = isset($_SERVER['HTTP_USER_AGENT']) ? (string) $_SERVER['HTTP_USER_AGENT'] : '';
        foreach (['Firefox', 'Edg', 'Chrome', 'Safari'] as $name) {
            if (strpos($agent, $name . '/') !== false) {
                return 'Webmail, ' . ($name === 'Edg' ? 'Edge' : $name);
            }
        }
        return 'Webmail browser';
    }

    // -- the session ------------------------------------------------------------------

    /** Each page of a signed-in session: is its mail credential still live? */
    public function startup($args)
    {
        if (!empty($_SESSION['user_id']) && !empty($_SESSION['twostep_required_from'])
            && $args['task'] === 'mail' && empty($args['action'])) {
            $this->remind((int) $_SESSION['twostep_required_from']);
        }
        if (empty($_SESSION['user_id']) || empty($_SESSION['twostep_credential'])
            || $args['task'] === 'logout' || $args['task'] === 'login') {
            return $args;
        }
        try {
            $reply = $this->client->ask([
                'op' => 'webmail-check',
                'user' => (string) $_SESSION['username'],
                'credential' => (string) $this->rc->decrypt($_SESSION['password']),
                'remote' => (string) rcube_utils::remote_addr(),
            ]);
        } catch (twostep_unavailable $e) {
            rcube::write_log('errors', 'twostep: ' . $e->getMessage());
            $reply = ['result' => 'tempfail'];
        }
        if ($reply['result'] === 'ok') {
            return $args;
        }
        if ($reply['result'] === 'ended') {
            $_SESSION['twostep_credential'] = false;   // nothing left to end at sign-out
            $this->end_session();
        }
        // twostepd could not say: this page is not served, the session is kept
        header('HTTP/1.1 503 Service Unavailable');
        header('Retry-After: 30');
        echo rcube::Q($this->gettext('unavailable'));
        exit;
    }

    /** An account its policy will require two-step of from a date on (core.rollout). */
    private function remind($when)
    {
        $this->rc->session->remove('twostep_required_from');
        $day = gmdate($when % 86400 === 0 ? 'Y-m-d' : 'Y-m-d H:i \U\T\C', $when);
        $url = (string) $this->rc->config->get('twostep_portal_url', '');
        $text = $this->gettext([
            'name' => $url !== '' ? 'remindportal' : 'remind',
            'vars' => ['date' => $day, 'url' => $url],
        ]);
        $this->rc->output->show_message($text, 'warning', null, true, 60);
    }

    private function end_session()
    {
        $rc = $this->rc;
        $rc->kill_session();
        $url = $rc->url(['_task' => 'login', '_err' => 'session'], false, false, true);
        if ($rc->output->ajax_call) {
            $rc->output->command('session_error', $url);
            $rc->output->send();
        } elseif ($rc->output->get_env('framed')) {
            $rc->output->command('session_error', $url);
            $rc->output->send('iframe');
        }
        $rc->output->redirect(['_task' => 'login', '_err' => 'session']);
        exit;
    }

    /** Sign-out (and a new sign-in over an open session): the credential ends. */
    public function session_destroy($args)
    {
        if (empty($_SESSION['twostep_credential']) || empty($_SESSION['password'])
            || empty($_SESSION['username'])) {
            return $args;
        }
        try {
            $this->client->ask([
                'op' => 'webmail-end',
                'user' => (string) $_SESSION['username'],
                'credential' => (string) $this->rc->decrypt($_SESSION['password']),
                'remote' => (string) rcube_utils::remote_addr(),
            ]);
        } catch (twostep_unavailable $e) {
            rcube::write_log('errors', 'twostep: the sign-out did not reach twostepd');
        }
        return $args;
    }

    /** Roundcube could not log in with the credential it was just given (IMAP refused
     * it, say the mail server sees another address): it ends, rather than idling on. */
    public function login_failed($args)
    {
        if ($this->issued !== null) {
            try {
                $this->client->ask([
                    'op' => 'webmail-end',
                    'user' => (string) $this->issued[0],
                    'credential' => (string) $this->issued[1],
                    'remote' => (string) rcube_utils::remote_addr(),
                ]);
            } catch (twostep_unavailable $e) {
                rcube::write_log('errors', 'twostep: an unused credential was not ended');
            }
            $this->issued = null;
            rcube::write_log('errors', 'twostep: IMAP refused the session credential; '
                . 'is twostep_mail_addresses the address the mail server sees?');
        }
        return $args;
    }

    // -- settings ---------------------------------------------------------------------

    public function settings_actions($args)
    {
        $url = (string) $this->rc->config->get('twostep_portal_url', '');
        if ($url === '') {
            return $args;
        }
        $args['actions'][] = [
            'action' => 'plugin.twostep-security',
            'class' => 'twostep-security',
            'label' => 'security',
            'title' => 'securitytitle',
            'domain' => 'twostep',
            'href' => $url,
            'target' => '_blank',
            'rel' => 'noopener noreferrer',
            'onclick' => 'return true',
        ];
        return $args;
    }
}
