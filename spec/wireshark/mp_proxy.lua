-- MP_PROXY (MPTCP option kind 30, subtype 0xF, experiment id 0xA5) for Wireshark/tshark 4.x.
-- Written from draft-proxyselection-mptcp-proxy-selection (Sections 5.1-5.6), not from any implementation.
--
-- A post-dissector: it walks the raw bytes of every "tcp.options" field of the frame, so it works whatever
-- Wireshark's own MPTCP dissector makes of subtype 0xF (tshark 4.0 leaves it undissected and may report a
-- "Dissector bug" on it). It never raises a Lua error on bad input: every path below checks the bytes it has.
--
-- Load:  tshark -X lua_script:spec/wireshark/mp_proxy.lua ...   (fields: spec/wireshark/README.md)

local p = Proto("mp_proxy", "MP_PROXY (MPTCP proxy selection)")

local MSG_NAMES = { [1] = "Probe", [2] = "Claim", [3] = "Defer", [4] = "Offer", [5] = "Upgrade" }
local FORMS = { [4] = "presence", [8] = "short", [16] = "long" }
local EXPERIMENT_ID = 0xA5
local VERSION = 1

local f = {
    kind       = ProtoField.uint8("mp_proxy.kind", "Kind", base.DEC),
    length     = ProtoField.uint8("mp_proxy.length", "Length", base.DEC),
    subtype    = ProtoField.uint8("mp_proxy.subtype", "Subtype", base.HEX),
    version    = ProtoField.uint8("mp_proxy.version", "Version", base.DEC),
    experiment = ProtoField.uint8("mp_proxy.experiment", "Experiment ID", base.HEX),
    form       = ProtoField.string("mp_proxy.form", "Form"),
    p          = ProtoField.uint8("mp_proxy.p", "P flag", base.DEC),
    msg        = ProtoField.uint8("mp_proxy.msg", "Message kind", base.DEC, MSG_NAMES),
    msg_name   = ProtoField.string("mp_proxy.msg_name", "Message"),
    prio       = ProtoField.uint8("mp_proxy.prio", "Priority", base.DEC),
    proxy_id   = ProtoField.uint8("mp_proxy.proxy_id", "Proxy ID", base.DEC),
    key_id     = ProtoField.uint8("mp_proxy.key_id", "Key ID", base.DEC),
    flags      = ProtoField.uint8("mp_proxy.flags", "Flags", base.HEX),
    flag_c     = ProtoField.uint8("mp_proxy.flags.c", "C (at capacity, bit 0)", base.DEC),
    tag        = ProtoField.bytes("mp_proxy.tag", "Tag"),
    status     = ProtoField.string("mp_proxy.status", "Receive status (Section 5.6)"),
    malformed  = ProtoField.string("mp_proxy.malformed", "Malformed"),
    other      = ProtoField.string("mp_proxy.other", "Not MP_PROXY"),
}
p.fields = f

local e = {
    malformed = ProtoExpert.new("mp_proxy.expert.malformed", "MP_PROXY option malformed",
        expert.group.MALFORMED, expert.severity.ERROR),
    other = ProtoExpert.new("mp_proxy.expert.not_mp_proxy", "Subtype 0xF option of another experiment (not MP_PROXY)",
        expert.group.PROTOCOL, expert.severity.NOTE),
    absent = ProtoExpert.new("mp_proxy.expert.absent", "MP_PROXY treated as absent by a receiver",
        expert.group.PROTOCOL, expert.severity.WARN),
    duplicate = ProtoExpert.new("mp_proxy.expert.duplicate", "More than one MP_PROXY in one segment: all treated as absent",
        expert.group.PROTOCOL, expert.severity.WARN),
}
p.experts = e

local tcp_options = Field.new("tcp.options")

local function flag_malformed(tree, range, why)
    tree:add(f.malformed, range, why)
    tree:add_proto_expert_info(e.malformed, "MP_PROXY malformed: " .. why)
end

-- Decodes one kind-30 option of subtype 0xF. `avail` is the bytes from its kind byte to the end of the
-- option list (tvb range `r`). Returns whether it was an MP_PROXY option (valid or not), and its tree item.
local function dissect_option(root, r, avail)
    local len = r(1, 1):uint()
    local shown = math.min(len >= 2 and len or avail, avail)
    local t = root:add(p, r(0, shown))
    t:add(f.kind, r(0, 1))
    t:add(f.length, r(1, 1))
    t:add(f.subtype, r(2, 1), bit.rshift(r(2, 1):uint(), 4))

    -- Section 5.6, in its order. An option that cannot be, or is not, MP_PROXY (too short for an experiment
    -- id, another experiment's id) is skipped: it never counts toward a duplicate.
    if len < 4 then
        t:add(f.status, r(1, 1), "BadLength")
        flag_malformed(t, r(1, 1), "length " .. len .. ": too short for an experiment id (not MP_PROXY)")
        t:append_text(": malformed (length " .. len .. ")")
        return false, t
    end
    if avail < 4 then
        t:add(f.status, r(0, avail), "Truncated")
        flag_malformed(t, r(0, avail), "truncated: length " .. len .. ", " .. avail .. " bytes in the option list")
        t:append_text(": malformed (truncated)")
        return true, t
    end

    local version = bit.band(r(2, 1):uint(), 0x0F)
    local exp = r(3, 1):uint()
    t:add(f.version, r(2, 1), version)
    t:add(f.experiment, r(3, 1))
    if exp ~= EXPERIMENT_ID then
        t:add(f.status, r(3, 1), "UnknownExperiment")
        t:add(f.other, r(3, 1), string.format("experiment id 0x%02x", exp))
        t:add_proto_expert_info(e.other)
        t:set_text(string.format("MPTCP subtype 0xF, experiment id 0x%02x: not MP_PROXY", exp))
        return false, t
    end
    if version ~= VERSION then
        -- Another version beside version 1 is a sender in transition: skipped, never a duplicate (Section 5.6).
        t:add(f.status, r(2, 1), "UnknownVersion")
        t:add_proto_expert_info(e.other, "MP_PROXY version " .. version .. ": not version 1, skipped")
        t:set_text("MP_PROXY version " .. version .. ": not version 1, skipped")
        return false, t
    end
    if FORMS[len] == nil then
        t:add(f.status, r(1, 1), "BadLength")
        flag_malformed(t, r(1, 1), "bad length " .. len .. " (only 4, 8, 16)")
        t:append_text(": malformed (length " .. len .. ")")
        return true, t
    end
    if avail < len then
        t:add(f.status, r(0, avail), "Truncated")
        flag_malformed(t, r(0, avail), "truncated: length " .. len .. ", " .. avail .. " bytes in the option list")
        t:append_text(": malformed (truncated)")
        return true, t
    end
    t:add(f.form, r(1, 1), FORMS[len])
    if len == 4 then
        t:add(f.status, r(0, 4), "Ok")
        t:append_text(": presence")
        return true, t
    end

    local b4 = r(4, 1):uint()
    local pflag = bit.rshift(b4, 7)
    local msg = bit.band(bit.rshift(b4, 4), 0x7)
    local prio = bit.band(b4, 0xF)
    local pid = r(5, 1):uint()
    t:add(f.p, r(4, 1), pflag)
    t:add(f.msg, r(4, 1), msg)
    t:add(f.msg_name, r(4, 1), MSG_NAMES[msg] or ("unassigned " .. msg))
    t:add(f.prio, r(4, 1), prio)
    t:add(f.proxy_id, r(5, 1))
    local tag_at = 6
    if len == 16 then
        local flags = r(7, 1):uint()
        t:add(f.key_id, r(6, 1))
        t:add(f.flags, r(7, 1))
        -- Bit 0 is the most significant bit of the byte (network bit order).
        t:add(f.flag_c, r(7, 1), bit.rshift(flags, 7))
        tag_at = 8
    end
    t:add(f.tag, r(tag_at, len - tag_at))

    local status = "Ok"
    if MSG_NAMES[msg] == nil then
        status = "UnknownMessage"
    elseif pflag == 0 then
        status = "NotFromProxy"
    elseif pid == 0 then
        -- Proxy id 0 is reserved: the option parses but a receiver treats it as absent (Section 5.3).
        status = "ReservedProxyId"
    end
    t:add(f.status, r(4, 2), status)
    if status ~= "Ok" then
        t:add_proto_expert_info(e.absent, status .. ": treated as absent")
    end
    t:append_text(string.format(": %s %s, proxy %d, priority %d%s", FORMS[len],
        MSG_NAMES[msg] or ("msg " .. msg), pid, prio, status == "Ok" and "" or (" (" .. status .. ")")))
    return true, t
end

local function walk(root, range)
    local n = range:len()
    local i = 0
    local items = {}
    while i < n do
        local kind = range(i, 1):uint()
        if kind == 0 then break end                  -- end of option list
        if kind == 1 then
            i = i + 1                                 -- NOP
        else
            if n - i < 2 then
                if kind == 30 then
                    local t = root:add(p, range(i, n - i))
                    t:add(f.kind, range(i, 1))
                    t:add(f.status, range(i, n - i), "Truncated")
                    flag_malformed(t, range(i, n - i), "truncated: no length byte")
                end
                break
            end
            local len = range(i + 1, 1):uint()
            if kind == 30 and n - i >= 3 and bit.rshift(range(i + 2, 1):uint(), 4) == 0xF then
                local is_mp, item = dissect_option(root, range(i, n - i), n - i)
                if is_mp then
                    items[#items + 1] = item
                end
            elseif kind == 30 and n - i < 3 then
                local t = root:add(p, range(i, n - i))
                t:add(f.kind, range(i, 1))
                t:add(f.length, range(i + 1, 1))
                t:add(f.status, range(i, n - i), "Truncated")
                flag_malformed(t, range(i, n - i), "truncated before the subtype")
            end
            if len < 2 then break end                 -- malformed list: nothing after it can be read
            i = i + len
        end
    end
    if #items > 1 then
        for _, item in ipairs(items) do
            item:add_proto_expert_info(e.duplicate)
        end
    end
end

function p.dissector(tvb, pinfo, tree)
    local all = { tcp_options() }
    for _, fi in ipairs(all) do
        local ok, range = pcall(function() return fi.range end)
        if ok and range ~= nil and range:len() > 0 then
            walk(tree, range)
        end
    end
end

register_postdissector(p)
