<?php

/**
 * The plugin's side of the twostepd protocol: one JSON object per line over its UNIX
 * socket, one request per connection, as the Lua passdb speaks it.
 *
 * Every failure (no socket, a timeout, a reply that is not one JSON object) is a
 * twostep_unavailable exception: the plugin shows "try again in a moment" and never
 * signs anyone in on it. Nothing here logs a request or a reply; they carry passwords,
 * codes and credentials.
 */
class twostep_unavailable extends Exception
{
}

class twostep_client
{
    const MAX_REPLY = 4194304;

    private $socket;
    private $timeout;

    public function __construct($socket, $timeout = 15.0)
    {
        $this->socket = $socket;
        $this->timeout = (float) $timeout;
    }

    /**
     * The reply to one request, as an array; twostep_unavailable otherwise.
     */
    public function ask(array $request)
    {
        $line = json_encode($request, JSON_UNESCAPED_SLASHES);
        if ($line === false || strlen($line) >= 8192) {
            throw new twostep_unavailable('request not encodable');
        }
        $errno = 0;
        $errstr = '';
        $stream = @stream_socket_client(
            'unix://' . $this->socket, $errno, $errstr, $this->timeout
        );
        if ($stream === false) {
            throw new twostep_unavailable('twostepd unreachable');
        }
        try {
            $seconds = (int) $this->timeout;
            stream_set_timeout($stream, $seconds, (int) (($this->timeout - $seconds) * 1e6));
            $data = $line . "\n";
            while ($data !== '') {
                $written = @fwrite($stream, $data);
                if ($written === false || $written === 0) {
                    throw new twostep_unavailable('twostepd did not take the request');
                }
                $data = (string) substr($data, $written);
            }
            $reply = '';
            while (strpos($reply, "\n") === false) {
                $chunk = @fread($stream, 65536);
                $meta = stream_get_meta_data($stream);
                if ($chunk === false || $chunk === '' && ($meta['timed_out'] || feof($stream))) {
                    throw new twostep_unavailable('no reply from twostepd');
                }
                $reply .= $chunk;
                if (strlen($reply) > self::MAX_REPLY) {
                    throw new twostep_unavailable('reply too large');
                }
            }
        } finally {
            fclose($stream);
        }
        $decoded = json_decode(substr($reply, 0, strpos($reply, "\n")), true, 16);
        if (!is_array($decoded) || !isset($decoded['result']) || !is_string($decoded['result'])) {
            throw new twostep_unavailable('malformed reply');
        }
        return $decoded;
    }
}
