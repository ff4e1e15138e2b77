-- xcauth's password and user database for Dovecot 2.3 and 2.4 (Dovecot's
-- Lua authentication, Debian's dovecot-auth-lua, with luasocket's
-- socket.unix, Debian's lua-socket).
--
-- passdb: `auth_password_verify` asks xcauth whether the password is right
-- for the login, passing the service and the client's address (xcauth's
-- guard counts failures per address). userdb: `auth_userdb_lookup` asks
-- whether the user exists (LMTP delivery, doveadm user). xcauth answers OK,
-- NO or TEMPFAIL; TEMPFAIL and any trouble reaching xcauth become Dovecot's
-- temporary failure, so IMAP clients see [UNAVAILABLE] and mail is
-- deferred, never refused, while Nextcloud is down.
--
-- The socket is xcauth's `--listen dovecot=unix:PATH`, reachable only by
-- Dovecot's auth processes and listed in xcauth's `trusted-socket`. Its
-- path, default /run/xcauth/dovecot.sock, is set with
--   Dovecot 2.4: lua_settings { socket = /PATH }
--   Dovecot 2.3: a global before loading this file:
--       xcauth_settings = { socket = "/PATH" }
--       dofile("/usr/share/xcauth/dovecot/xcauth.lua")
-- `timeout` (seconds to wait for one answer, default 20) is set the same way.
-- See docs/dovecot.md. The password is never logged.

local unix = require "socket.unix"

local settings = {
    socket = "/run/xcauth/dovecot.sock",
    timeout = 20,
}

-- The open connection of this process (auth worker), reused for every
-- request; nil until the first one and after any trouble.
local conn = nil

local function apply(overrides)
    if type(overrides) ~= "table" then
        return
    end
    if overrides.socket ~= nil then
        settings.socket = tostring(overrides.socket)
    end
    if overrides.timeout ~= nil then
        settings.timeout = tonumber(overrides.timeout) or settings.timeout
    end
end

apply(rawget(_G, "xcauth_settings"))

-- Dovecot 2.4 passes lua_settings here; 2.3 passes nothing.
function script_init(args)
    apply(args)
    return 0
end

function script_deinit()
    if conn ~= nil then
        conn:close()
        conn = nil
    end
end

-- A field of a request line: backslash, TAB, line feed and carriage return
-- escaped, so a password can hold any of them.
local ESCAPES = { ["\\"] = "\\\\", ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r" }
local function field(text)
    return (tostring(text or ""):gsub("[\\\t\n\r]", ESCAPES))
end

local function connect()
    local c, err = unix.stream()
    if c == nil then
        return nil, err
    end
    c:settimeout(settings.timeout)
    local ok, cerr = c:connect(settings.socket)
    if ok == nil then
        c:close()
        return nil, "connecting to " .. settings.socket .. ": " .. tostring(cerr)
    end
    return c
end

-- Sends one request line and reads the answer word; nil and a reason (never
-- holding the request, which may hold a password) on trouble. A connection
-- kept from an earlier request may have been closed by xcauth meanwhile
-- (idle timeout, restart): then the request is tried once more on a new one.
local function ask(line)
    for attempt = 1, 2 do
        local reused = conn ~= nil
        if conn == nil then
            local c, err = connect()
            if c == nil then
                return nil, err
            end
            conn = c
        end
        local sent, serr = conn:send(line)
        local answer, rerr
        if sent ~= nil then
            answer, rerr = conn:receive("*l")
        end
        if answer ~= nil then
            return answer
        end
        conn:close()
        conn = nil
        local why = serr or rerr
        if not reused or why == "timeout" or attempt == 2 then
            return nil, settings.socket .. ": " .. tostring(why)
        end
    end
end

-- USER and DOMAIN of a login `user@domain` (split at the last @), or nil.
-- A login without a domain gets one from Dovecot's auth_default_realm
-- (2.3) / auth_default_domain (2.4) before it comes here.
local function split_login(login)
    local user, domain = string.match(login or "", "^(.+)@([^@]+)$")
    return user, domain
end

local function service_of(req)
    -- Dovecot 2.3 calls it service, 2.4 protocol.
    return req.service or req.protocol or ""
end

-- What Dovecot logs with a temporary failure.
local function trouble(answer, err)
    if answer == "TEMPFAIL" then
        return "xcauth: Nextcloud could not be asked and xcauth's cache could not answer (temporary failure)"
    elseif answer ~= nil then
        return "xcauth: unexpected answer " .. string.format("%q", string.sub(answer, 1, 40))
    end
    return "xcauth: " .. tostring(err)
end

function auth_password_verify(req, password)
    local auth = dovecot.auth
    local user, domain = split_login(req.user)
    if user == nil then
        req:log_info("xcauth: login without @domain; set auth_default_realm (2.3) or auth_default_domain (2.4)")
        return auth.PASSDB_RESULT_USER_UNKNOWN, ""
    end
    local line = "auth\t" .. field(user) .. "\t" .. field(domain) .. "\t" .. field(password) .. "\t"
        .. field(service_of(req)) .. "\t" .. field(req.remote_ip) .. "\n"
    local answer, err = ask(line)
    if answer == "OK" then
        -- A table: Dovecot 2.4 takes no string here.
        return auth.PASSDB_RESULT_OK, {}
    elseif answer == "NO" then
        return auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
    end
    return auth.PASSDB_RESULT_INTERNAL_FAILURE, trouble(answer, err)
end

function auth_userdb_lookup(req)
    local auth = dovecot.auth
    local user, domain = split_login(req.user)
    if user == nil then
        return auth.USERDB_RESULT_USER_UNKNOWN, ""
    end
    local answer, err = ask("isuser\t" .. field(user) .. "\t" .. field(domain) .. "\n")
    if answer == "OK" then
        return auth.USERDB_RESULT_OK, {}
    elseif answer == "NO" then
        return auth.USERDB_RESULT_USER_UNKNOWN, ""
    end
    return auth.USERDB_RESULT_INTERNAL_FAILURE, trouble(answer, err)
end

-- Dovecot 2.4 caches a userdb answer under this key (auth_cache_size > 0);
-- no passdb key is given, so logins are never answered from Dovecot's
-- cache (xcauth keeps its own, which knows about app passwords).
function auth_userdb_get_cache_key()
    return "%{user}"
end
