-- twostep passdb for Dovecot 2.3 and 2.4 (Lua): asks twostepd whether a login is right.
--
-- Dovecot 2.3:  passdb { driver = lua; args = file=/usr/local/share/twostep/twostep-passdb.lua blocking=yes }
-- Dovecot 2.4:  see config/dovecot/conf.d/auth-twostep-lua-2.4.conf.ext
--
-- With blocking=yes the script runs in Dovecot's auth-worker processes, one request at a
-- time each, and each worker keeps its own connection to the daemon across requests.
-- The socket is $TWOSTEP_SOCKET and the wait $TWOSTEP_TIMEOUT seconds (pass them with
-- import_environment), or the defaults below.
--
-- Results: accept -> PASSDB_RESULT_OK with the canonical user name and any userdb fields
-- the daemon returns; deny -> PASSWORD_MISMATCH; anything else (daemon down or slow, a
-- reply that does not parse) -> INTERNAL_FAILURE, which clients see as a temporary
-- failure. The protocol is the one in README.md, "The twostepd protocol"; the tests hold
-- this file's JSON encoder and decoder to the Python side's.

local unix = require("socket.unix")

local SOCKET = os.getenv("TWOSTEP_SOCKET") or "/run/twostep/twostepd.sock"
local TIMEOUT = tonumber(os.getenv("TWOSTEP_TIMEOUT") or "") or 5   -- seconds per request
if not (TIMEOUT >= 0.1 and TIMEOUT <= 60) then TIMEOUT = 5 end
local MAX_MESSAGE = 8192   -- bytes per message, as in pam_twostep/wire.py

local connection = nil

-- JSON ------------------------------------------------------------------------------

local ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r',
                  ['\t'] = '\\t', ['\b'] = '\\b', ['\f'] = '\\f' }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Encodes a flat request: string and boolean values, keys in the order given.
local function encode(request, keys)
  local parts = {}
  for _, key in ipairs(keys) do
    local value = request[key]
    if type(value) == "boolean" then
      parts[#parts + 1] = json_string(key) .. ":" .. tostring(value)
    elseif value ~= nil then
      parts[#parts + 1] = json_string(key) .. ":" .. json_string(tostring(value))
    end
  end
  return "{" .. table.concat(parts, ",") .. "}\n"
end

-- Decodes one JSON value of a reply. Returns value, next position; or nil, message.
local NULL = setmetatable({}, { __tostring = function() return "null" end })
local decode_value

local function skip(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then return nil, "unterminated string" end
    if c == '"' then return table.concat(out), j + 1 end
    if c:byte() < 32 then return nil, "control character in string" end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      local simple = ({ ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f',
                        n = '\n', r = '\r', t = '\t' })[e]
      if simple then
        out[#out + 1], j = simple, j + 2
      elseif e == "u" then
        local hex = s:sub(j + 2, j + 5)
        if not hex:match("^%x%x%x%x$") then return nil, "bad \\u escape" end
        local code = tonumber(hex, 16)
        j = j + 6
        if code >= 0xD800 and code <= 0xDBFF then
          local low = s:match("^\\u(%x%x%x%x)", j)
          local second = low and tonumber(low, 16)
          if not second or second < 0xDC00 or second > 0xDFFF then
            return nil, "lone surrogate"
          end
          code = 0x10000 + (code - 0xD800) * 0x400 + (second - 0xDC00)
          j = j + 6
        elseif code >= 0xDC00 and code <= 0xDFFF then
          return nil, "lone surrogate"
        end
        out[#out + 1] = utf8.char(code)
      else
        return nil, "bad escape"
      end
    else
      out[#out + 1], j = c, j + 1
    end
  end
end

decode_value = function(s, i, depth)
  if depth > 16 then return nil, "nested too deeply" end
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == '"' then return decode_string(s, i) end
  if c == "{" then
    local object = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return object, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then return nil, "expected a key" end
      local key, value
      key, i = decode_string(s, i)
      if key == nil then return nil, i end
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then return nil, "expected :" end
      value, i = decode_value(s, i + 1, depth + 1)
      if value == nil then return nil, i end
      object[key] = value
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "}" then return object, i + 1 end
      if d ~= "," then return nil, "expected , or }" end
      i = skip(s, i + 1)
    end
  end
  if c == "[" then
    local array = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return array, i + 1 end
    while true do
      local value
      value, i = decode_value(s, i, depth + 1)
      if value == nil then return nil, i end
      array[#array + 1] = value
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "]" then return array, i + 1 end
      if d ~= "," then return nil, "expected , or ]" end
      i = i + 1
    end
  end
  for literal, value in pairs({ ["true"] = true, ["false"] = false }) do
    if s:sub(i, i + #literal - 1) == literal then return value, i + #literal end
  end
  if s:sub(i, i + 3) == "null" then return NULL, i + 4 end
  local number = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if number and tonumber(number) then return tonumber(number), i + #number end
  return nil, "unexpected character"
end

local function decode(line)
  if #line > MAX_MESSAGE then return nil, "reply too large" end
  if line:sub(1, 1) ~= "{" then return nil, "not a JSON object" end
  local value, i = decode_value(line, 1, 0)
  if value == nil then return nil, i end
  if skip(line, i) <= #line then return nil, "trailing data" end
  return value
end

-- The connection ----------------------------------------------------------------------

local function drop()
  if connection then connection:close() end
  connection = nil
end

-- Sends one request line, returns the reply line. Reconnects once when the daemon had
-- closed the connection (restart, idle timeout); after a timeout the connection is
-- dropped, so a late answer can never be read as the answer to the next request.
local function exchange(line)
  for _ = 1, 2 do
    if connection == nil then
      local sock = unix()
      sock:settimeout(TIMEOUT)
      local ok, err = sock:connect(SOCKET)
      if not ok then
        sock:close()
        return nil, "cannot connect to " .. SOCKET .. ": " .. tostring(err)
      end
      connection = sock
    end
    local sent, err = connection:send(line)
    if sent then
      local reply, receive_err = connection:receive("*l")
      if reply then return reply end
      err = receive_err
    end
    drop()
    if err ~= "closed" then return nil, "twostepd: " .. tostring(err) end
  end
  return nil, "twostepd closed the connection twice"
end

-- Dovecot ----------------------------------------------------------------------------

local REQUEST_KEYS = { "op", "flow", "user", "password", "service", "remote", "local", "secured" }

function auth_password_verify(req, pass)
  local auth = dovecot.auth
  -- A password that is not UTF-8 can match nothing; say so without asking.
  if pass == nil or pass == "" or utf8.len(pass) == nil or utf8.len(req.user or "") == nil then
    return auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
  end
  local secured = req.secured   -- 2.3: "secured" or ""; 2.4 also "TLS"
  local line = encode({
    op = "auth", flow = "mail", user = req.user, password = pass,
    -- Dovecot 2.3 calls the service "service", 2.4 "protocol".
    service = req.service or req.protocol or "unknown",
    remote = req.remote_ip, ["local"] = req.local_ip,
    secured = secured == true or (type(secured) == "string" and secured ~= ""),
  }, REQUEST_KEYS)
  if #line > MAX_MESSAGE then
    return auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
  end
  local reply, err = exchange(line)
  if reply == nil then
    return auth.PASSDB_RESULT_INTERNAL_FAILURE, err
  end
  local answer, problem = decode(reply)
  if type(answer) ~= "table" then
    drop()
    return auth.PASSDB_RESULT_INTERNAL_FAILURE, "twostepd: not a reply: " .. tostring(problem)
  end
  if answer.result == "accept" and type(answer.user) == "string" and answer.user ~= "" then
    local fields = { user = answer.user }
    if type(answer.fields) == "table" then
      for key, value in pairs(answer.fields) do
        if type(key) == "string" and type(value) == "string" and key:match("^[%l_][%w_]*$") then
          fields[key] = value
        end
      end
    end
    return auth.PASSDB_RESULT_OK, fields
  end
  if answer.result == "deny" or answer.result == "challenge" then
    return auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
  end
  return auth.PASSDB_RESULT_INTERNAL_FAILURE, "twostepd: " .. tostring(answer.result)
    .. " " .. tostring(answer.reason or answer.error or "")
end

-- For the tests, which load this file in a plain Lua interpreter.
twostep_internal = { encode = encode, decode = decode, REQUEST_KEYS = REQUEST_KEYS, NULL = NULL }
