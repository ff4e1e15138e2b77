-- xcauth_connection: one line-protocol connection to xcauth's socket with
-- Prosody's own network API, for mod_roster_xcauth (loaded with
-- module:require("xcauth_connection"), which looks for this file beside
-- the module).
--
-- Requests are pipelined on one connection and answered in order: each
-- answer line goes to the oldest request waiting. A request waits only its
-- own async runner, for at most its timeout; a late answer closes the
-- connection (it could no longer be matched) and fails every request on
-- it. After a failure the next request connects again; a request whose
-- connection was lost before its answer is sent once more, up to max_sends.

local async = require "util.async";
local server = require "net.server";

local M = {};

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

-- A connection to xcauth at `address_setting` for `mod` (the Prosody
-- module, for logs and timers); answers longer than `max_answer` bytes are
-- out of protocol.
function M.new(mod, address_setting, max_answer, max_sends)
	local kind, address, port = parse_address(address_setting);
	if not kind or (kind == "tcp" and not require "util.net".pton(address)) then
		error("the xcauth socket must be IPv4:PORT, [IPv6]:PORT (an IP address, not a name) "
			.. "or an absolute Unix socket path, not " .. ("%q"):format(address_setting));
	end
	local unix;
	if kind == "unix" then
		local ok, lib = pcall(require, "socket.unix");
		if not ok then
			error("the xcauth socket is a Unix socket path, but LuaSocket has no socket.unix here: " .. tostring(lib));
		end
		unix = lib;
	end

	-- `conn`: the current net.server connection or nil; `sent`: requests
	-- written on it, oldest first; `partial`: the pieces of an unfinished
	-- line (joined only once its end arrives: joining a big answer piece by
	-- piece would copy it over and over), `partial_len` their length.
	local self = {};
	local conn, sent, partial, partial_len = nil, {}, {}, 0;
	local listener = {};

	local function finish(req, answer, err)
		if req.done then
			return;
		end
		req.done = true;
		if req.timer then
			req.timer:stop();
		end
		req.answer, req.err = answer, err;
		req.wake();
	end

	local function detach()
		local old, waiting = conn, sent;
		conn, sent, partial, partial_len = nil, {}, {}, 0;
		return old, waiting;
	end

	-- Closes the connection on purpose; every request on it fails.
	function self:drop(reason)
		local old, waiting = detach();
		if old then
			mod:log("debug", "Closing the connection to xcauth at %s: %s", address_setting, reason);
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
		return c;
	end

	local function send(req)
		req.sends = req.sends + 1;
		if not conn then
			local ok, err = connect();
			if not ok then
				finish(req, nil, "cannot connect: " .. tostring(err));
				return;
			end
		end
		sent[#sent + 1] = req;
		conn:write(req.line);
	end

	function listener.onincoming(c, data)
		if c ~= conn then
			return;
		end
		partial[#partial + 1] = data;
		partial_len = partial_len + #data;
		local answered, confused = {}, nil;
		if not data:find("\n", 1, true) then
			if partial_len > max_answer then
				confused = "an over-long answer";
			end
		else
			-- Pair every complete line first, then wake the waiting
			-- sessions: a woken session may send the next request.
			local text, from = table.concat(partial), 1;
			while true do
				local nl = text:find("\n", from, true);
				if not nl then
					break;
				end
				local line = text:sub(from, nl - 1):gsub("\r$", "");
				from = nl + 1;
				local req = table.remove(sent, 1);
				if not req then
					confused = "an answer nobody asked for";
					break;
				end
				answered[#answered + 1] = { req, line };
			end
			local rest = text:sub(from);
			partial, partial_len = { rest }, #rest;
			if not confused and partial_len > max_answer then
				confused = "an over-long answer";
			end
		end
		if confused then
			-- The module says so once per outage; here only for debugging.
			mod:log("debug", "xcauth at %s sent %s; reconnecting", address_setting, confused);
			self:drop("xcauth sent " .. confused);
		end
		for _, a in ipairs(answered) do
			finish(a[1], a[2]);
		end
	end

	function listener.ondisconnect(c, err)
		if c ~= conn then
			return;
		end
		local _, waiting = detach();
		mod:log("debug", "Connection to xcauth at %s ended with %d request(s) unanswered: %s",
			address_setting, #waiting, tostring(err or "closed by xcauth"));
		for _, req in ipairs(waiting) do
			if not req.done and req.sends < max_sends then
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

	-- Sends `line` and waits (only this async runner) at most `timeout`
	-- seconds: the answer line, or nil and why not.
	function self:ask(line, timeout)
		if not async.ready() then
			return nil, "not in an async context";
		end
		local wait, wake = async.waiter();
		local req = { line = line, sends = 0, wake = wake };
		req.timer = mod:add_timer(timeout, function ()
			if not req.done then
				self:drop("no answer within the timeout");
				finish(req, nil, ("no answer within %gs"):format(timeout));
			end
		end);
		send(req);
		if not req.done then
			wait();
		end
		return req.answer, req.err;
	end

	return self;
end

return M;
