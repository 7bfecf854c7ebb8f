using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ProxySelection.Interception.Rules;

/// <summary>
/// The kernel side of interception, for IPv4 and IPv6:
/// <list type="bullet">
/// <item><c>raw PREROUTING → PREFIX_QUEUE</c>: client SYNs to the intercepted ports go to NFQUEUE with
/// <c>--queue-bypass</c>, so they pass when no daemon listens. raw, because NF_ACCEPT resumes at the next hook. With
/// <see cref="InterceptionRulesetOptions.QueueOnlyMptcpSyns"/> only SYNs carrying TCP option 30 (MPTCP) are queued, with
/// <see cref="InterceptionRulesetOptions.QueueOnlyMptcpSynAcks"/> only such SYN/ACKs.</item>
/// <item><c>mangle PREROUTING → PREFIX_TPROXY</c>: packets of connections a transparent socket already holds get the
/// intercept mark and skip the rest; a packet carrying the verdict's mark goes to TPROXY with <c>--on-port 0</c>,
/// which keeps the original destination port (a transparent listener must exist on it, or MP_JOIN is reset).</item>
/// <item><c>mangle POSTROUTING → PREFIX_EGRESS</c>: the proxy's own SYNs and SYN/ACKs carrying the egress mark
/// (SO_MARK) go to NFQUEUE so MP_PROXY can be added.</item>
/// <item>With <see cref="InterceptionRulesetOptions.HandshakeSetSeconds"/>: each SYN sent to TPROXY is added to the
/// ipset <c>PREFIX_HS4</c>/<c>_HS6</c>, and a later segment of that handshake that found no socket (a SYN-cookie
/// ACK: the wildcard listener is not matched by <c>-m socket</c>) goes to TPROXY too, not on to the real server.</item>
/// <item>Policy routing: <c>fwmark MARK/MASK lookup TABLE</c> at a fixed priority, and <c>local default dev lo</c>
/// in that table.</item>
/// </list>
/// <see cref="ApplyAsync"/> first removes leftovers, so it is idempotent. <see cref="RemoveAsync"/> and
/// <see cref="CleanupAsync"/> remove exactly what carries the chain prefix, the rule and the route (nothing else), and
/// are idempotent; with the nf_tables backend they also drop an xtables table left completely empty, so
/// iptables-save reads as before Apply.
/// </summary>
public sealed class InterceptionRuleset
{
    private readonly InterceptionRulesetOptions options;
    private readonly ICommandRunner runner;
    private readonly ILogger logger;

    public InterceptionRuleset(InterceptionRulesetOptions options, ICommandRunner? runner = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options;
        this.runner = runner ?? new ProcessCommandRunner();
        this.logger = logger ?? NullLogger.Instance;
    }

    public string QueueChain => $"{options.ChainPrefix}_QUEUE";

    public string TproxyChain => $"{options.ChainPrefix}_TPROXY";

    public string EgressChain => $"{options.ChainPrefix}_EGRESS";

    /// <summary>mangle: the packets of this proxy's own transparent sockets, marked and delivered locally.</summary>
    public string LocalChain => $"{options.ChainPrefix}_LOCAL";

    /// <summary>raw: the kernel fast path's chain (<see cref="InterceptionRulesetOptions.FastPath"/>).</summary>
    public string FastChain => $"{options.ChainPrefix}_FAST";

    private IEnumerable<bool> Families => new[] { false, true }.Where(v6 => v6 ? options.IPv6 : options.IPv4);

    /// <summary>Installs the ruleset (after removing any leftovers of the same prefix).</summary>
    public async Task ApplyAsync(CancellationToken cancellationToken = default)
    {
        await CleanupAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            bool handshakeSet = options.HandshakeSetSeconds > 0 && await CreateHandshakeSetsAsync(cancellationToken).ConfigureAwait(false);
            if (options.KernelSigned)
            {
                if (!handshakeSet)
                {
                    throw new InterceptionRulesException("kernel signing needs the ipset tool (package ipset) for the re-sign set");
                }

                await CreateResignSetsAsync(cancellationToken).ConfigureAwait(false);
            }

            if (options.FastPath)
            {
                if (options.FastPathIntercept && !handshakeSet)
                {
                    throw new InterceptionRulesException("the kernel fast path needs the ipset tool (package ipset)");
                }

                await CreateFastPathSetsAsync(cancellationToken).ConfigureAwait(false);
            }
            foreach (var v6 in Families)
            {
                await CheckAsync(v6 ? "ip6tables-restore" : "iptables-restore", ["--noflush"], RenderRestoreScript(v6, handshakeSet), cancellationToken)
                    .ConfigureAwait(false);
                var family = v6 ? "-6" : "-4";
                await CheckAsync("ip", [family, "rule", "add", "pref", Str(options.RulePriority), "fwmark", MarkSpec(options.InterceptMark, options.InterceptMask),
                    "lookup", Str(options.RoutingTable)], null, cancellationToken).ConfigureAwait(false);
                await CheckAsync("ip", [family, "route", "add", "local", v6 ? "::/0" : "0.0.0.0/0", "dev", "lo", "table", Str(options.RoutingTable)],
                    null, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            // Never leave half a ruleset behind.
            await CleanupAsync(CancellationToken.None).ConfigureAwait(false);
            InterceptionLog.RulesetApplyFailed(logger, options.ChainPrefix, e);
            throw;
        }

        InterceptionLog.RulesetApplied(logger, options.ChainPrefix, options.QueueNumber, string.Join(',', options.Ports));
    }

    /// <summary>Creates the handshake sets; false (logged) when the ipset tool is not installed: the ruleset then works
    /// as before it, and a flood that drives the listener to SYN cookies breaks the connections answered with one.</summary>
    private async Task<bool> CreateHandshakeSetsAsync(CancellationToken cancellationToken)
    {
        foreach (var v6 in Families)
        {
            var r = await runner.RunAsync("ipset", ["create", IpSetNames.Handshake(options.ChainPrefix, v6), "hash:ip,port,ip",
                "family", v6 ? "inet6" : "inet", "timeout", Str(options.HandshakeSetSeconds), "maxelem", Str(options.HandshakeSetMaxElements),
                "hashsize", Str(options.HandshakeSetHashSize)],
                null, cancellationToken).ConfigureAwait(false);
            if (r.ExitCode == 127)
            {
                InterceptionLog.NoIpset(logger, options.ChainPrefix, r.StdErr.Trim());
                return false;
            }

            if (!r.Succeeded)
            {
                throw new InterceptionRulesException($"ipset create {IpSetNames.Handshake(options.ChainPrefix, v6)} exited {r.ExitCode}: {r.StdErr.Trim()}");
            }
        }

        return true;
    }

    private async Task CreateResignSetsAsync(CancellationToken cancellationToken)
    {
        foreach (var v6 in Families)
        {
            // Only probe answers land here (rare): a small set; a full one costs a Claim where a Defer was due, which the
            // prober reads as this proxy holding the connection it then resets (spec §7.5.2), never a broken connection.
            await CheckAsync("ipset", ["create", IpSetNames.Resign(options.ChainPrefix, v6), "hash:ip,port,ip", "family", v6 ? "inet6" : "inet",
                "timeout", Str(options.HandshakeSetSeconds), "maxelem", "4096", "hashsize", "4096"], null, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task CreateFastPathSetsAsync(CancellationToken cancellationToken)
    {
        foreach (var v6 in Families)
        {
            foreach (var name in (string[])[IpSetNames.KnownMptcp(options.ChainPrefix, v6), IpSetNames.KnownTcpOnly(options.ChainPrefix, v6)])
            {
                // timeout 0: entries carry their own (the cache entry's remaining life); counters: what the kernel decided.
                await CheckAsync("ipset", ["create", name, "hash:ip,port", "family", v6 ? "inet6" : "inet", "timeout", "0", "counters",
                    "maxelem", Str(options.FastPathMaxElements)], null, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Removes the ruleset installed by <see cref="ApplyAsync"/>: <see cref="CleanupAsync"/>, logged.</summary>
    public async Task RemoveAsync(CancellationToken cancellationToken = default)
    {
        await CleanupAsync(cancellationToken).ConfigureAwait(false);
        InterceptionLog.RulesetRemoved(logger, options.ChainPrefix);
    }

    /// <summary>
    /// Removes everything this ruleset would install — whether this process installed it or a crashed one did.
    /// Idempotent: nothing present, nothing done. Throws <see cref="InterceptionRulesException"/> if something stays.
    /// </summary>
    public async Task CleanupAsync(CancellationToken cancellationToken = default)
    {
        var nft = await IsNftBackendAsync(cancellationToken).ConfigureAwait(false);
        foreach (var v6 in Families)
        {
            foreach (var table in (string[])["raw", "mangle"])
            {
                await RemoveChainsAsync(v6, table, nft, cancellationToken).ConfigureAwait(false);
            }

            var family = v6 ? "-6" : "-4";
            for (var i = 0; i < 16; i++)
            {
                var r = await runner.RunAsync("ip", [family, "rule", "del", "pref", Str(options.RulePriority), "fwmark",
                    MarkSpec(options.InterceptMark, options.InterceptMask), "lookup", Str(options.RoutingTable)], null, cancellationToken).ConfigureAwait(false);
                if (!r.Succeeded)
                {
                    break;
                }
            }

            for (var i = 0; i < 16; i++)
            {
                var r = await runner.RunAsync("ip", [family, "route", "del", "local", v6 ? "::/0" : "0.0.0.0/0", "dev", "lo", "table",
                    Str(options.RoutingTable)], null, cancellationToken).ConfigureAwait(false);
                if (!r.Succeeded)
                {
                    break;
                }
            }

            var rules = await CheckAsync("ip", [family, "rule", "show", "pref", Str(options.RulePriority)], null, cancellationToken).ConfigureAwait(false);
            if (rules.Contains($"lookup {options.RoutingTable}", StringComparison.Ordinal))
            {
                throw new InterceptionRulesException($"ip {family} rule at pref {options.RulePriority} survived removal: {rules.Trim()}");
            }
        }

        // After the rules: a set a rule still references cannot be destroyed.
        await DestroySetsAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task DestroySetsAsync(CancellationToken cancellationToken)
    {
        var listed = await runner.RunAsync("ipset", ["list", "-n"], null, cancellationToken).ConfigureAwait(false);
        if (listed.ExitCode == 127)
        {
            // No ipset tool: this proxy created no set.
            return;
        }

        var present = listed.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
        foreach (var name in IpSetNames.All(options.ChainPrefix).Where(present.Contains))
        {
            await CheckAsync("ipset", ["destroy", name], null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The iptables-restore / ip6tables-restore input (<c>--noflush</c>); the same for both families but for the
    /// set names (socket, TPROXY, SET and NFQUEUE take the same options in ip6tables). <paramref name="handshakeSet"/>:
    /// render the handshake set's rules (default: when <see cref="InterceptionRulesetOptions.HandshakeSetSeconds"/> &gt; 0).</summary>
    public string RenderRestoreScript(bool v6 = false, bool? handshakeSet = null)
    {
        var o = options;
        bool withHandshakeSet = handshakeSet ?? o.HandshakeSetSeconds > 0;
        string handshake = IpSetNames.Handshake(o.ChainPrefix, v6);
        var sb = new StringBuilder();
        var mark = MarkSpec(o.InterceptMark, o.InterceptMask);
        sb.Append("*raw\n");
        sb.Append(CultureInfo.InvariantCulture, $":{QueueChain} - [0:0]\n");
        if (o.FastPath)
        {
            sb.Append(CultureInfo.InvariantCulture, $":{FastChain} - [0:0]\n");
        }

        sb.Append(CultureInfo.InvariantCulture, $"-I PREROUTING 1 -j {QueueChain}\n");
        // multiport takes at most 15 ports per rule.
        foreach (var chunk in o.Ports.Distinct().Order().Chunk(15))
        {
            if (o.KernelJoinMatch is { } joins)
            {
                // A join whose token this proxy's listener handed out goes to it (mangle's TPROXY rule), never queued; the
                // listener authenticates it (RFC 8684: the HMAC in its third ACK). Other tokens are the queue's as before.
                // Only while the listener is on the port (as the fast path): after a SIGKILL the join goes on to the
                // queue and --queue-bypass passes it, instead of TPROXY dropping it.
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {QueueChain} -p tcp --syn --tcp-option 30 -m multiport --dports {string.Join(',', chunk)} -m bpf --object-pinned {joins} -m socket --transparent --nowildcard -j MARK --set-xmark {mark}\n");
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {QueueChain} -p tcp --syn -m multiport --dports {string.Join(',', chunk)} -m mark --mark {mark} -j ACCEPT\n");
            }

            if (o.KernelForeignJoinMatch is { } foreign)
            {
                // A join whose token is not this proxy's, while the map holds every token it handed out, is a passed
                // connection's: it goes on in the kernel, as the engine would pass it.
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {QueueChain} -p tcp --syn --tcp-option 30 -m multiport --dports {string.Join(',', chunk)} -m bpf --object-pinned {foreign} -j ACCEPT\n");
            }

            if (o.FastPath)
            {
                // What the fast path does not decide returns here and is queued as before.
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {QueueChain} -p tcp --syn --tcp-option 30 -m multiport --dports {string.Join(',', chunk)} -j {FastChain}\n");
            }

            // --tcp-option 30 (MPTCP) also matches in ip6tables; iptables-nft renders it as "tcp option 30 exists".
            string mptcpOnly = o.QueueOnlyMptcpSyns ? " --tcp-option 30" : "";
            sb.Append(CultureInfo.InvariantCulture,
                $"-A {QueueChain} -p tcp --syn{mptcpOnly} -m multiport --dports {string.Join(',', chunk)} -j NFQUEUE --queue-num {o.QueueNumber} --queue-bypass\n");
            // RSTs toward the ports too: a RST for the flow of a held SYN ends the hold (spec §7.2). With the gate, only while
            // a SYN is held: MPTCP closes subflows with RSTs, one queue trip per connection otherwise.
            string gate = o.KernelRstGate is { } rstGate ? $" -m bpf --object-pinned {rstGate}" : "";
            sb.Append(CultureInfo.InvariantCulture,
                $"-A {QueueChain} -p tcp --tcp-flags SYN,RST RST -m multiport --dports {string.Join(',', chunk)}{gate} -j NFQUEUE --queue-num {o.QueueNumber} --queue-bypass\n");
            if (o.QueueSynAcks && o.QueueOnlyMptcpSynAcks && o.FastPath && o.FastPathPass)
            {
                // A known MPTCP server's SYN/ACKs (its connections' and their joins') teach the engine nothing: it reads
                // an answer only for its own probes or while the destination is unknown, and the set holds it only while
                // the cache knows it. They stay in the kernel (pass-through MPTCP: two queue trips fewer per connection),
                // without touching the element's counters (those count the SYNs the kernel decided).
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {QueueChain} -p tcp --tcp-flags SYN,ACK,RST SYN,ACK -m multiport --sports {string.Join(',', chunk)} -m set --match-set {IpSetNames.KnownMptcp(o.ChainPrefix, v6)} src,src ! --update-counters -j ACCEPT\n");
            }

            if (o.QueueSynAcks)
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {QueueChain} -p tcp --tcp-flags SYN,ACK,RST SYN,ACK{(o.QueueOnlyMptcpSynAcks ? " --tcp-option 30" : "")} -m multiport --sports {string.Join(',', chunk)} -j NFQUEUE --queue-num {o.QueueNumber} --queue-bypass\n");
            }
        }

        if (o.FastPath)
        {
            RenderFastPath(sb, v6, mark);
        }

        sb.Append("COMMIT\n*mangle\n");
        sb.Append(CultureInfo.InvariantCulture, $":{TproxyChain} - [0:0]\n:{LocalChain} - [0:0]\n:{EgressChain} - [0:0]\n");
        sb.Append(CultureInfo.InvariantCulture, $"-I PREROUTING 1 -j {TproxyChain}\n");
        sb.Append(CultureInfo.InvariantCulture, $"-I POSTROUTING 1 -j {EgressChain}\n");
        // Established and half-open intercepted connections: their packets must be delivered locally too. A SYN that reuses
        // the 4-tuple of a held connection whose proxy side is in TIME_WAIT matches too, whatever its verdict: it could not
        // be passed (early demux gives it to that socket and forwarding drops it), so the listener takes it over
        // (HandshakeSetPortReuseTests). One socket lookup per TCP packet, not two: a MARK rule and an ACCEPT rule that
        // each matched -m socket looked every packet of a passed flow up twice, both misses.
        sb.Append(CultureInfo.InvariantCulture, $"-A {TproxyChain} -p tcp -m socket --transparent -j {LocalChain}\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {LocalChain} -j MARK --set-xmark {mark}\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {LocalChain} -j ACCEPT\n");
        if (withHandshakeSet)
        {
            // Remember the intercepted handshake: its completing ACK may find no socket (below).
            sb.Append(CultureInfo.InvariantCulture,
                $"-A {TproxyChain} -p tcp --syn -m mark --mark {mark} -j SET --add-set {handshake} src,src,dst --exist --timeout {Str(o.HandshakeSetSeconds)}\n");
            // A SYN the proxy passes forgets any entry its key shares: the key has no destination port, and a client that
            // reuses its port toward the same server's other intercepted port within the timeout (a busy client: ports
            // wrap in seconds) would otherwise have that passed flow's ACKs sent to the listener, which resets them.
            foreach (var chunk in o.Ports.Distinct().Order().Chunk(15))
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {TproxyChain} -p tcp --syn -m mark ! --mark {mark} -m multiport --dports {string.Join(',', chunk)} -j SET --del-set {handshake} src,src,dst\n");
            }
        }

        if (o.KernelSigned)
        {
            // The engine signs this handshake's SYN/ACK itself (a Defer): the egress rule below queues it.
            sb.Append(CultureInfo.InvariantCulture,
                $"-A {TproxyChain} -p tcp --syn -m mark --mark {MarkSpec(o.ResignMark, o.ResignMask)} -j SET --add-set {IpSetNames.Resign(o.ChainPrefix, v6)} src,src,dst --exist --timeout {Str(o.HandshakeSetSeconds)}\n");
        }

        // --on-port 0: the kernel keeps the packet's destination port (xt_TPROXY: lport ? lport : hp->dest).
        sb.Append(CultureInfo.InvariantCulture, $"-A {TproxyChain} -p tcp -m mark --mark {mark} -j TPROXY --on-port 0 --tproxy-mark {mark}\n");
        if (withHandshakeSet)
        {
            // A listener that ran out of SYN queue answered with a SYN cookie and kept no request socket, so -m socket
            // found only the wildcard listener, which it ignores; without this the ACK went on to the real server, which
            // reset the connection (issue 12). Only handshakes this proxy sent to TPROXY are in the set: a passed flow's
            // ACK never matches. TPROXY finds the listener by port, or drops the segment if there is none.
            // The set's key has no destination port (no ipset type holds two ports): the intercepted ports narrow it, and a
            // passed SYN with the same key removes the entry (above), so only two flows open at once from the same client
            // address and port to the same server could share one.
            foreach (var chunk in o.Ports.Distinct().Order().Chunk(15))
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"-A {TproxyChain} -p tcp --tcp-flags SYN,RST,ACK ACK -m multiport --dports {string.Join(',', chunk)} -m set --match-set {handshake} src,src,dst -j TPROXY --on-port 0 --tproxy-mark {mark}\n");
            }
        }

        // The domain edge first: whatever leaves by it (forwarded, or the proxy's own) is stripped of MP_PROXY, not signed.
        foreach (var edge in o.EdgeInterfaces)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"-A {EgressChain} -o {edge} -p tcp --tcp-flags SYN SYN --tcp-option 30 -j NFQUEUE --queue-num {o.EffectiveEgressQueue} --queue-bypass\n");
        }

        if (o.KernelSigned)
        {
            // The listener's SYN/ACK is signed in the kernel; one whose SYN asked for a re-sign (above) comes to the engine.
            sb.Append(CultureInfo.InvariantCulture,
                $"-A {EgressChain} -p tcp --tcp-flags SYN,ACK SYN,ACK -m set --match-set {IpSetNames.Resign(o.ChainPrefix, v6)} dst,dst,src -j NFQUEUE --queue-num {o.EffectiveEgressQueue} --queue-bypass\n");
        }

        sb.Append(CultureInfo.InvariantCulture,
            $"-A {EgressChain} -p tcp --tcp-flags SYN SYN -m mark --mark {MarkSpec(o.EgressMark, o.EgressMask)} -j NFQUEUE --queue-num {o.EffectiveEgressQueue} --queue-bypass\n");
        sb.Append("COMMIT\n");
        return sb.ToString();
    }

    /// <summary>
    /// The fast path (raw <c>PREFIX_FAST</c>): SYNs whose verdict could depend on more than the destination go back to
    /// the queue (MD5/AO, and <see cref="SynOptionFilter"/>'s MPTCP options other than MP_CAPABLE v1); then a known
    /// MPTCP destination passes, a known TCP-only one is marked for TPROXY (mangle sends it to the listener and records
    /// its handshake). The rules' counters are what the kernel decided.
    /// </summary>
    private void RenderFastPath(StringBuilder sb, bool v6, string mark)
    {
        var o = options;
        sb.Append(CultureInfo.InvariantCulture, $"-A {FastChain} -p tcp --tcp-option 19 -j RETURN\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {FastChain} -p tcp --tcp-option 29 -j RETURN\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {FastChain} -m bpf --bytecode \"{SynOptionFilter.Bytecode(v6)}\" -j RETURN\n");
        if (o.FastPathPass)
        {
            sb.Append(CultureInfo.InvariantCulture, $"-A {FastChain} -m set --match-set {IpSetNames.KnownMptcp(o.ChainPrefix, v6)} dst,dst -j ACCEPT\n");
        }

        if (o.FastPathIntercept)
        {
            // Only while this proxy's transparent listener is on the port (-m socket finds it by port with --nowildcard):
            // after a SIGKILL the listener is gone, the SYN goes on to the queue and --queue-bypass passes it (fail open)
            // instead of TPROXY dropping it.
            string toSet = $"-m set --match-set {IpSetNames.KnownTcpOnly(o.ChainPrefix, v6)} dst,dst -m socket --transparent --nowildcard";
            sb.Append(CultureInfo.InvariantCulture, $"-A {FastChain} {toSet} -j MARK --set-xmark {mark}\n");
            sb.Append(CultureInfo.InvariantCulture, $"-A {FastChain} {toSet} -j ACCEPT\n");
        }
    }

    private async Task RemoveChainsAsync(bool v6, string table, bool nft, CancellationToken cancellationToken)
    {
        var tool = v6 ? "ip6tables" : "iptables";
        var nftFamily = v6 ? "ip6" : "ip";
        if (nft && !(await runner.RunAsync("nft", ["list", "table", nftFamily, table], null, cancellationToken).ConfigureAwait(false)).Succeeded)
        {
            // Table absent: nothing of ours can be in it (and listing it with iptables-save would not create it, but costs).
            return;
        }

        var saved = await CheckAsync($"{tool}-save", ["-t", table], null, cancellationToken).ConfigureAwait(false);
        var prefix = options.ChainPrefix + "_";
        var lines = saved.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        // Every rule in a built-in chain that jumps to one of our chains, deleted by its exact saved spec.
        foreach (var line in lines.Where(l => l.StartsWith("-A ", StringComparison.Ordinal)))
        {
            var parts = line.Split(' ');
            var jump = Array.IndexOf(parts, "-j");
            if (jump > 0 && jump + 1 < parts.Length && parts[jump + 1].StartsWith(prefix, StringComparison.Ordinal)
                && !parts[1].StartsWith(prefix, StringComparison.Ordinal))
            {
                await CheckAsync(tool, ["-t", table, "-D", .. parts[1..]], null, cancellationToken).ConfigureAwait(false);
            }
        }

        var ours = lines.Where(l => l.StartsWith(':' + prefix, StringComparison.Ordinal)).Select(l => l[1..].Split(' ')[0]).ToList();
        foreach (var chain in ours)
        {
            await CheckAsync(tool, ["-t", table, "-F", chain], null, cancellationToken).ConfigureAwait(false);
        }

        foreach (var chain in ours)
        {
            await CheckAsync(tool, ["-t", table, "-X", chain], null, cancellationToken).ConfigureAwait(false);
        }

        if (nft)
        {
            await DropTableIfEmptyAsync(tool, nftFamily, table, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task DropTableIfEmptyAsync(string tool, string nftFamily, string table, CancellationToken cancellationToken)
    {
        // Empty: no rules, no user chains, every built-in policy ACCEPT — it filters nothing, so dropping it changes no
        // behaviour, and iptables recreates it on demand.
        var saved = await CheckAsync($"{tool}-save", ["-t", table], null, cancellationToken).ConfigureAwait(false);
        var lines = saved.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var empty = !lines.Any(l => l.StartsWith("-A ", StringComparison.Ordinal))
            && lines.Where(l => l.StartsWith(':')).All(l => l.Split(' ') is [_, "ACCEPT", ..]);
        if (empty)
        {
            await runner.RunAsync("nft", ["delete", "table", nftFamily, table], null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>True when iptables drives nf_tables and the nft tool is there to inspect and drop tables.</summary>
    private async Task<bool> IsNftBackendAsync(CancellationToken cancellationToken)
    {
        var tool = options.IPv4 ? "iptables" : "ip6tables";
        var r = await runner.RunAsync(tool, ["--version"], null, cancellationToken).ConfigureAwait(false);
        if (!r.Succeeded)
        {
            throw new InterceptionRulesException($"{tool} is not usable: {r.StdErr.Trim()}");
        }

        return r.StdOut.Contains("nf_tables", StringComparison.Ordinal)
            && (await runner.RunAsync("nft", ["--version"], null, cancellationToken).ConfigureAwait(false)).Succeeded;
    }

    private async Task<string> CheckAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
    {
        var r = await runner.RunAsync(file, args, stdin, cancellationToken).ConfigureAwait(false);
        return r.Succeeded
            ? r.StdOut
            : throw new InterceptionRulesException($"{file} {string.Join(' ', args)} exited {r.ExitCode}: {r.StdErr.Trim()}");
    }

    private static string MarkSpec(uint mark, uint mask) => $"0x{mark:x}/0x{mask:x}";

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);
}
