-- mod_auth_xcauth: Prosody logins checked by xcauth over its socket, with
-- Prosody's own event loop (no lpty, no spawned helper process).
--
-- Configuration, globally or per VirtualHost:
--
--   authentication = "xcauth"
--   xcauth_socket  = "/run/xcauth/prosody.sock"  -- xcauth's prosody/generic
--                                         -- socket: an absolute Unix socket
--                                         -- path, "IPv4:PORT" or
--                                         -- "[IPv6]:PORT" (default
--                                         -- "127.0.0.1:23663")
--   xcauth_timeout = 15                   -- seconds to wait for an answer
--
-- xcauth must serve the "generic" (alias "prosody") protocol on that socket,
-- e.g. the shipped xcprosody-unix.socket unit (/run/xcauth/prosody.sock,
-- group prosody) or `xcauth -t prosody --listen
-- prosody=unix:/run/xcauth/prosody.sock --socket-group prosody
-- --trusted-socket unix:/run/xcauth/prosody.sock`.
--
-- Each login carries the session's address (authclient:), for xcauth's
-- failure guard. xcauth believes it only on a socket it trusts
-- (trusted-socket; xcauth.service trusts /run/xcauth/prosody.sock): every
-- local user can reach a TCP port and could name any address there. On
-- the TCP socket (xcprosody.socket, port 23663, this module's default)
-- logins work the same, but the guard counts per account only.
--
-- Why a socket and not Prosody's mod_auth_external: that module spawns the
-- helper on a pseudo-terminal through the lpty library, which Debian does
-- not build for the Lua that Prosody 0.12 runs on, and whose terminal echo
-- and read timeouts lost or mixed up answers in the original xcauth setup.
--
-- The protocol: one request per line, "auth:USER:DOMAIN:PASSWORD" or
-- "isuser:USER:DOMAIN", answered "1" (yes) or "0" (no), in request order.
-- The password is the last field, so it may contain ":"; a line break in
-- any field would split the request, so such requests are refused here.
--
-- One connection per virtual host carries every request, several at once;
-- answers are matched to requests by their order. While a request waits,
-- only the login (an async "thread" of Prosody's) waits; the server goes on.
-- After a failure the next request connects again; a request whose
-- connection was lost before the answer is sent once more on a new one.
-- When an answer is late, the connection is closed (a late answer could no
-- longer be matched) and the requests on it fail.
--
-- Passwords are never logged. Password changes, registration and account
-- deletion are refused: accounts live in Nextcloud.

local new_sasl = require "util.sasl".new;
local server = require "net.server";
local async = require "util.async";

local host = module.host;
local address_setting = module:get_option_string("xcauth_socket", "127.0.0.1:23663");
-- Below Prosody's own c2s_timeout (300 s), above xcauth's default back-end
-- timeout (10 s), so xcauth's answer normally arrives first.
local answer_timeout = module:get_option_number("xcauth_timeout", 15);

-- xcauth refuses generic lines over 8 KiB; stay below that.
local MAX_REQUEST = 8000;
-- An answer is "1" or "0"; anything much longer means a confused peer.
local MAX_ANSWER = 256;
-- How often a request is sent before giving up on lost connections.
local MAX_SENDS = 2;

-- Where to connect: ("unix", path) or ("tcp", ip, port).
local function parse_address(text)
	if text:sub(1, 1) == "/" then
		return "unix", text;
	end
	local ip, port = text:match("^%[([^%]]+)%]:(%d+)$");
	if not ip then
		ip, port = text:match("^([^:]+):(%d+)$");
	end
	port = tonumber(port);
	if not ip or not port or port < 1 or port > 65535 then
		return nil;
	end
	return "tcp", ip, port;
end

local kind, address, port = parse_address(address_setting);
if not kind or (kind == "tcp" and not require "util.net".pton(address)) then
	error("xcauth_socket must be IPv4:PORT, [IPv6]:PORT (an IP address, not a name) "
		.. "or an absolute Unix socket path, not " .. ("%q"):format(address_setting));
end

local unix;
if kind == "unix" then
	local ok, lib = pcall(require, "socket.unix");
	if not ok then
		error("xcauth_socket is a Unix socket path, but LuaSocket has no socket.unix here: " .. tostring(lib));
	end
	unix = lib;
end

-- Connection state. `conn` is the current net.server connection or nil;
-- `sent` lists the requests written on it, oldest first, each waiting for
-- its answer; `inbuf` holds the start of an unfinished answer line.
local conn = nil;
local sent = {};
local inbuf = "";

local listener = {};

-- Ends a request once: its waiting login resumes with `result`
-- (true/false, or nil and `err`).
local function finish(req, result, err)
	if req.done then
		return;
	end
	req.done = true;
	if req.timer then
		req.timer:stop();
	end
	req.result, req.err = result, err;
	req.wake();
end

-- Forgets the current connection and hands back what was waiting on it.
local function detach()
	local old, waiting = conn, sent;
	conn, sent, inbuf = nil, {}, "";
	return old, waiting;
end

-- Closes the connection on purpose; every request on it fails.
local function drop(reason)
	local old, waiting = detach();
	if old then
		module:log("debug", "Closing the connection to xcauth at %s: %s", address_setting, reason);
		-- conn is already nil, so the disconnect callback ignores it.
		old:close();
	end
	for _, req in ipairs(waiting) do
		finish(req, nil, reason);
	end
end

local function connect()
	local c, err;
	if kind == "unix" then
		local sock;
		sock, err = (unix.stream or unix)();
		if not sock then
			return nil, err;
		end
		sock:settimeout(0);
		local ok, cerr = sock:connect(address);
		if not ok and cerr ~= "timeout" then
			sock:close();
			return nil, cerr;
		end
		c, err = server.wrapclient(sock, address, 0, listener);
	else
		c, err = server.addclient(address, port, listener);
	end
	if not c then
		return nil, err;
	end
	conn = c;
	module:log("debug", "Connecting to xcauth at %s", address_setting);
	return c;
end

-- Writes a request, connecting first when needed.
local function send(req)
	req.sends = req.sends + 1;
	if not conn then
		local ok, err = connect();
		if not ok then
			module:log("warn", "Cannot connect to xcauth at %s: %s", address_setting, tostring(err));
			finish(req, nil, "xcauth unreachable");
			return;
		end
	end
	sent[#sent + 1] = req;
	conn:write(req.line);
end

function listener.onconnect(c)
	if c == conn then
		module:log("debug", "Connected to xcauth at %s", address_setting);
	end
end

function listener.onincoming(c, data)
	if c ~= conn then
		return;
	end
	inbuf = inbuf .. data;
	-- Pair every complete line with the oldest request first, and only
	-- then wake the logins: a woken login may send the next request.
	local answered, confused = {}, nil;
	while true do
		local nl = inbuf:find("\n", 1, true);
		if not nl then
			break;
		end
		local line = inbuf:sub(1, nl - 1):gsub("\r$", "");
		inbuf = inbuf:sub(nl + 1);
		local req = table.remove(sent, 1);
		if not req then
			confused = "an answer nobody asked for";
			break;
		elseif line == "1" then
			answered[#answered + 1] = { req, true };
		elseif line == "0" then
			answered[#answered + 1] = { req, false };
		else
			answered[#answered + 1] = { req, nil, "unexpected answer from xcauth" };
			confused = "an answer that is neither 1 nor 0";
			break;
		end
	end
	if not confused and #inbuf > MAX_ANSWER then
		confused = "an over-long answer";
	end
	if confused then
		module:log("warn", "xcauth at %s sent %s; reconnecting", address_setting, confused);
		drop("xcauth answered out of protocol");
	end
	for _, a in ipairs(answered) do
		finish(a[1], a[2], a[3]);
	end
end

function listener.ondisconnect(c, err)
	if c ~= conn then
		return;
	end
	local _, waiting = detach();
	err = tostring(err or "closed by xcauth");
	if #waiting > 0 then
		module:log("warn", "Connection to xcauth at %s lost with %d request(s) unanswered: %s",
			address_setting, #waiting, err);
	else
		module:log("debug", "Connection to xcauth at %s ended: %s", address_setting, err);
	end
	for _, req in ipairs(waiting) do
		if not req.done and req.sends < MAX_SENDS then
			send(req);
		else
			finish(req, nil, "connection to xcauth lost");
		end
	end
end

-- An idle connection stays open; late answers are caught by each
-- request's own timer.
function listener.onreadtimeout()
	return true;
end

-- Asks xcauth one question and waits (only this login) for the answer:
-- true, false, or nil and an error.
local function ask(line)
	if not async.ready() then
		return nil, "not in an async context";
	end
	local wait, wake = async.waiter();
	local req = { line = line, sends = 0, wake = wake };
	req.timer = module:add_timer(answer_timeout, function ()
		if not req.done then
			module:log("warn", "No answer from xcauth at %s within %gs", address_setting, answer_timeout);
			drop("no answer within the timeout");
			finish(req, nil, "xcauth did not answer in time");
		end
	end);
	send(req);
	wait();
	return req.result, req.err;
end

-- A field that cannot break the line protocol.
local function clean(field)
	return type(field) == "string" and field ~= "" and not field:find("[\r\n]");
end

local provider = { name = "xcauth" };

-- The client's address as xcauth's authclient: request takes it: IPv4 as
-- it is, IPv6 in brackets; nil for anything else (then a plain auth:).
local function client_field(ip)
	if type(ip) ~= "string" then
		return nil;
	end
	if ip:match("^%d+%.%d+%.%d+%.%d+$") then
		return ip;
	elseif ip:match("^[%x:%.]+$") and ip:find(":", 1, true) then
		return "[" .. ip .. "]";
	end
	return nil;
end

-- Checks a password; `ip` (the session's address, when known) lets
-- xcauth's failure guard count failed logins per client address.
function provider.test_password(username, password, ip)
	if not clean(username) or username:find(":", 1, true) or not clean(password) then
		return nil, "Invalid username or password";
	end
	local client = client_field(ip);
	local line;
	if client then
		line = "authclient:" .. client .. ":" .. username .. ":" .. host .. ":" .. password .. "\n";
	else
		line = "auth:" .. username .. ":" .. host .. ":" .. password .. "\n";
	end
	if #line > MAX_REQUEST then
		return nil, "Password too long";
	end
	local ok, err = ask(line);
	if ok then
		return true;
	elseif ok == false then
		module:log("debug", "xcauth rejected the password of %s@%s", username, host);
		return nil, "Wrong username or password";
	end
	module:log("warn", "Cannot check the password of %s@%s: %s", username, host, tostring(err));
	return nil, err;
end

function provider.user_exists(username)
	if not clean(username) or username:find(":", 1, true) then
		return nil, "Invalid username";
	end
	if not async.ready() then
		-- Nowhere to wait: saying "no" would bounce mail-like traffic and
		-- subscriptions for real users, so assume the account exists.
		module:log("debug", "user_exists(%s) outside an async context: assuming yes", username);
		return true;
	end
	local ok, err = ask("isuser:" .. username .. ":" .. host .. "\n");
	if ok then
		return true;
	elseif ok == false then
		return nil, "No such user";
	end
	module:log("warn", "Cannot check whether %s@%s exists: %s", username, host, tostring(err));
	return nil, err;
end

function provider.set_password()
	return nil, "Passwords are changed in Nextcloud, not here";
end

function provider.create_user()
	return nil, "Accounts are created in Nextcloud, not here";
end

function provider.delete_user()
	return nil, "Accounts are deleted in Nextcloud, not here";
end

function provider.users()
	-- xcauth cannot list accounts.
	return function() return nil; end;
end

function provider.get_sasl_handler(session)
	local ip = session and session.ip;
	return new_sasl(host, {
		-- PLAIN only: xcauth checks passwords, it cannot hand them out
		-- for SCRAM or DIGEST.
		plain_test = function(_, username, password)
			return provider.test_password(username, password, ip) == true, true;
		end;
	});
end

function module.unload()
	drop("module unloaded");
end

module:provides("auth", provider);
