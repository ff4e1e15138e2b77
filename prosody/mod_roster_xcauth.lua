-- mod_roster_xcauth: the members of a user's Nextcloud groups in the user's
-- roster, asked of xcauth over its socket with Prosody's own event loop.
--
-- Configuration, globally or per VirtualHost (docs/prosody.md says more):
--
--   modules_enabled = { ..., "roster_xcauth" }
--   xcauth_roster_socket  = "127.0.0.1:23663" -- default: xcauth_socket, the
--                                             -- one mod_auth_xcauth uses
--   xcauth_roster_timeout = 10    -- seconds one fetch may take
--   xcauth_roster_ttl     = 600   -- seconds a fetched roster may stand in
--                                 -- when xcauth cannot answer; set it to
--                                 -- xcauth's roster-ttl
--   xcauth_roster_refresh = 600   -- seconds between refreshes of online
--                                 -- users' rosters (roster pushes); 0: off
--
-- xcauth answers "roster:USER:DOMAIN" with one line: the shared roster as
-- JSON, {UID: {"name": display name, "groups": [group names]}, ...}, or "0"
-- when it cannot tell. A UID is "name" or "name@domain"; a bare name is a
-- user of this host.
--
-- When a roster is loaded (a user's first session binds, or an offline
-- user's roster is needed), the members are added the way Prosody's
-- mod_groups adds its groups: subscription "both", the display name as the
-- name, the group names as roster groups, and `persist = false`, which a
-- datamanager callback honours by leaving them out of what is stored
-- (Prosody's internal storage; the same limit as mod_groups). A contact the
-- user has in the stored roster is left exactly as the user keeps it.
--
-- Nothing here blocks Prosody: the fetch runs on a connection of its own
-- (so a slow roster never delays mod_auth_xcauth's login answers), and only
-- the session whose roster loads waits, inside its async runner, for at
-- most xcauth_roster_timeout. Without an answer the roster loads without
-- the shared members (or with the last answer younger than
-- xcauth_roster_ttl), and one warning is logged per outage.

local async = require "util.async";
local new_cache = require "util.cache".new;
local datamanager = require "util.datamanager";
local jid_util = require "util.jid";
local json = require "util.json";
local rostermanager = require "core.rostermanager";
local st = require "util.stanza";

local host = module.host;
local address_setting = module:get_option_string("xcauth_roster_socket",
	module:get_option_string("xcauth_socket", "127.0.0.1:23663"));
local fetch_timeout = module:get_option_number("xcauth_roster_timeout", 10);
local fallback_ttl = module:get_option_number("xcauth_roster_ttl", 600);
local refresh_every = module:get_option_number("xcauth_roster_refresh", 600);

-- xcauth's answer is one line; bound what one answer may make us buffer.
-- A member takes about 100 bytes: this is room for some 80 000 of them.
local MAX_ANSWER = 8 * 1024 * 1024;
-- How often a request is sent before giving up on lost connections.
local MAX_SENDS = 2;
-- Members taken from one answer; the rest are ignored (and logged).
local MAX_MEMBERS = 20000;
-- Rosters kept to stand in while xcauth cannot answer (least recently
-- fetched ones are forgotten first).
local MAX_FALLBACK_ROSTERS = 1000;
-- Group names ending in U+200B are left out, as xcauth's ejabberd sync does:
-- an administrator's way to keep a big group out of rosters.
local ZERO_WIDTH_SPACE = "\226\128\139";

local connection = module:require("xcauth_connection");
local link = connection.new(module, address_setting, MAX_ANSWER, MAX_SENDS);

-- The last good answer per user: { at = time, members = {jid = item} },
-- for the MAX_FALLBACK_ROSTERS users asked for most recently.
local last_good = new_cache(MAX_FALLBACK_ROSTERS);
-- The items this module put into a roster table: roster -> { jid = true }.
-- Weak keys: a roster Prosody forgets is forgotten here too.
local injected = setmetatable({}, { __mode = "k" });
-- When a roster table got its members: roster -> time.
local stamped = setmetatable({}, { __mode = "k" });

-- One warning per outage, not one per user.
local healthy = true;
local function outage(why)
	if healthy then
		healthy = false;
		module:log("warn", "Shared rosters from xcauth at %s unavailable (%s); rosters load without "
			.. "them until xcauth answers again", address_setting, why);
	else
		module:log("debug", "Shared roster from xcauth still unavailable: %s", why);
	end
end
local function recovered()
	if not healthy then
		healthy = true;
		module:log("info", "Shared rosters from xcauth at %s available again", address_setting);
	end
end

-- A roster group name from xcauth, or nil to leave the group out.
local function group_name(name)
	if type(name) ~= "string" or name == "" or name:find(ZERO_WIDTH_SPACE, -#ZERO_WIDTH_SPACE, true) then
		return nil;
	end
	return name;
end

-- The JID of a member UID: "name" on this host, or "name@domain".
local function member_jid(uid)
	if type(uid) ~= "string" then
		return nil;
	end
	local node, domain = uid:match("^(.*)@([^@]*)$");
	if not node then
		node, domain = uid, host;
	end
	return jid_util.prep(node .. "@" .. domain);
end

-- The members of xcauth's answer as roster items, by JID; nil when the
-- answer is not what xcauth sends.
local function members_of(username, text)
	local decoded = json.decode(text);
	if type(decoded) ~= "table" then
		return nil;
	end
	local self_jid = username .. "@" .. host;
	local members, count = {}, 0;
	for uid, entry in pairs(decoded) do
		local jid = member_jid(uid);
		if jid and jid ~= self_jid and type(entry) == "table" then
			count = count + 1;
			if count > MAX_MEMBERS then
				module:log("warn", "The shared roster of %s has over %d members; the rest are left out",
					self_jid, MAX_MEMBERS);
				break;
			end
			local groups = {};
			if type(entry.groups) == "table" then
				for _, g in ipairs(entry.groups) do
					local name = group_name(g);
					if name then
						groups[name] = true;
					end
				end
			end
			local name = type(entry.name) == "string" and entry.name ~= "" and entry.name or nil;
			members[jid] = { subscription = "both", name = name, groups = groups, persist = false };
		end
	end
	return members;
end

-- Asks xcauth for the members of `username`'s groups and waits (only this
-- session) for them: the items by JID, or nil when xcauth cannot say.
local function fetch(username)
	if not username:find("^[^:\r\n]+$") then
		return nil;
	end
	module:log("debug", "Asking xcauth for the shared roster of %s@%s", username, host);
	local answer, err = link:ask("roster:" .. username .. ":" .. host .. "\n", fetch_timeout);
	if not answer then
		outage(err);
		return nil;
	elseif answer == "0" then
		outage("xcauth could not get the roster of " .. username .. " from Nextcloud");
		return nil;
	end
	local members = members_of(username, answer);
	if not members then
		outage("an answer that is not a shared roster");
		link:drop("an answer that is not a shared roster");
		return nil;
	end
	recovered();
	last_good:set(username, { at = os.time(), members = members });
	return members;
end

-- The members to show now: fetched (when this session may wait), else the
-- last good answer while it is younger than xcauth_roster_ttl.
local function current_members(username)
	if async.ready() then
		local members = fetch(username);
		if members then
			return members;
		end
	end
	local last = last_good:get(username);
	if last and os.time() - last.at < fallback_ttl then
		return last.members;
	end
	return nil;
end

-- A copy of an item, so that one user's roster never shares tables with
-- another's or with the fallback.
local function copy_item(item)
	local groups = {};
	for g in pairs(item.groups) do
		groups[g] = true;
	end
	return { subscription = item.subscription, name = item.name, groups = groups, persist = false };
end

local function same_item(a, b)
	if not a or not b or a.name ~= b.name or a.subscription ~= b.subscription then
		return false;
	end
	for g in pairs(a.groups or {}) do
		if not b.groups[g] then
			return false;
		end
	end
	for g in pairs(b.groups or {}) do
		if not a.groups[g] then
			return false;
		end
	end
	return true;
end

-- Puts `members` into `roster`, replacing what this module put there
-- before; returns the JIDs that changed (added, changed, removed = true).
-- The user's own stored contacts are never touched.
local function apply(roster, members)
	local mine = injected[roster] or {};
	local changed = {};
	for jid in pairs(mine) do
		if not members[jid] and roster[jid] and roster[jid].persist == false then
			roster[jid] = nil;
			changed[jid] = "removed";
		end
	end
	local now_mine = {};
	for jid, item in pairs(members) do
		local existing = roster[jid];
		if existing == nil or (mine[jid] and existing.persist == false) then
			if not same_item(existing, item) then
				roster[jid] = copy_item(item);
				changed[jid] = existing and "changed" or "added";
			end
			now_mine[jid] = true;
		end
	end
	injected[roster] = now_mine;
	stamped[roster] = os.time();
	if next(now_mine) ~= nil and roster[false] then
		-- Roster versions would tell clients that nothing changed.
		roster[false].version = true;
	end
	return changed;
end

-- Presence between a removed member and the user stops: each side's
-- resources get an "unavailable" from the other's.
local function part(username, jid)
	local user_sessions = prosody.bare_sessions[username .. "@" .. host];
	local other_sessions = prosody.bare_sessions[jid];
	if not user_sessions or not other_sessions then
		return;
	end
	for _, a in pairs(user_sessions.sessions) do
		for _, b in pairs(other_sessions.sessions) do
			if a.full_jid and b.full_jid then
				a.send(st.presence({ type = "unavailable", from = b.full_jid, to = a.full_jid }));
				b.send(st.presence({ type = "unavailable", from = a.full_jid, to = b.full_jid }));
			end
		end
	end
end

-- Brings an online user's roster up to date and pushes the changes to
-- the user's clients.
local function refresh(username)
	local user = prosody.hosts[host].sessions[username];
	local roster = user and user.roster;
	if not roster then
		return;
	end
	local members = fetch(username);
	if not members then
		return;
	end
	for jid, what in pairs(apply(roster, members)) do
		rostermanager.roster_push(username, host, jid);
		if what == "removed" then
			part(username, jid);
		end
	end
end

-- Online users' rosters are refreshed one at a time (gentle on Nextcloud),
-- in a runner of their own so that each may wait for xcauth. A user is
-- queued at most once: a slow cycle never piles up work.
local queued = {};
local refresher = async.runner(function (username)
	local ok, err = pcall(refresh, username);
	queued[username] = nil;
	if not ok then
		module:log("error", "Refreshing the shared roster of %s failed: %s", username, tostring(err));
	end
end);

module:hook("roster-load", function (event)
	if event.host ~= host then
		return;
	end
	local ok, err = pcall(function ()
		-- Whether xcauth was asked: if not (no async runner to wait in),
		-- the next login of this user refreshes the roster.
		local asked = async.ready();
		local members = current_members(event.username);
		if members then
			apply(event.roster, members);
			local count = 0;
			for _ in pairs(injected[event.roster]) do
				count = count + 1;
			end
			module:log("debug", "Added %d shared members to the roster of %s@%s", count, event.username, host);
		elseif asked then
			stamped[event.roster] = os.time();
		end
	end);
	if not ok then
		module:log("error", "Adding the shared roster of %s failed: %s", event.username, tostring(err));
	end
end);

-- A roster Prosody kept in its cache of offline rosters is reused at the
-- next login without "roster-load": refresh it when its members are old.
module:hook("resource-bind", function (event)
	local session = event.session;
	local roster = session.roster;
	if not roster or session.host ~= host then
		return;
	end
	local at = stamped[roster];
	if not at or os.time() - at >= fallback_ttl then
		refresh(session.username);
	end
end);

-- What mod_groups does: items marked persist = false are left out of what
-- the internal storage writes.
local function leave_out_shared(username, store_host, datastore, data)
	if store_host == host and datastore == "roster" and type(data) == "table" then
		local kept = {};
		for jid, item in pairs(data) do
			if jid == false or type(item) ~= "table" or item.persist ~= false then
				kept[jid] = item;
			end
		end
		return username, store_host, datastore, kept;
	end
	return username, store_host, datastore, data;
end

function module.load()
	datamanager.add_callback(leave_out_shared);
	if refresh_every > 0 then
		module:add_timer(refresh_every, function ()
			for username, user in pairs(prosody.hosts[host].sessions) do
				if user.roster and injected[user.roster] and not queued[username] then
					queued[username] = true;
					refresher:run(username);
				end
			end
			return refresh_every;
		end);
	end
end

function module.unload()
	datamanager.remove_callback(leave_out_shared);
	link:drop("module unloaded");
end
