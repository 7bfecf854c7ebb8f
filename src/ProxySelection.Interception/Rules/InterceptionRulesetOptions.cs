using System.Text.RegularExpressions;

namespace ProxySelection.Interception.Rules;

/// <summary>What the interception ruleset hooks and how it is named. Defaults suit one proxy per namespace.</summary>
public sealed partial class InterceptionRulesetOptions
{
    /// <summary>Prefix of every chain the ruleset creates (<c>PREFIX_QUEUE</c>, <c>PREFIX_TPROXY</c>, <c>PREFIX_EGRESS</c>);
    /// removal deletes exactly the chains with this prefix. Upper-case letters, digits and '_', 2..16 characters.</summary>
    public string ChainPrefix { get; init; } = "PSEL";

    /// <summary>NFQUEUE number for client SYNs (raw PREROUTING).</summary>
    public ushort QueueNumber { get; init; }

    /// <summary>NFQUEUE number for the proxy's own marked SYNs and SYN/ACKs (mangle POSTROUTING); null: <see cref="QueueNumber"/>.</summary>
    public ushort? EgressQueueNumber { get; init; }

    /// <summary>Destination ports whose SYNs are queued (at least one).</summary>
    public IReadOnlyList<ushort> Ports { get; init; } = [];

    /// <summary>Mark bits a verdict sets to intercept (TPROXY + policy routing match them under <see cref="InterceptMask"/>).</summary>
    public uint InterceptMark { get; init; } = 0x1;

    public uint InterceptMask { get; init; } = 0x1;

    /// <summary>SO_MARK bits on the proxy's own sockets whose SYNs/SYN-ACKs must pass the queue (to carry MP_PROXY).</summary>
    public uint EgressMark { get; init; } = 0x2;

    public uint EgressMask { get; init; } = 0x2;

    /// <summary>
    /// The kernel signs the proxy's own SYN/ACKs and upstream SYNs (a cgroup <c>sock_ops</c> program,
    /// <see cref="Bpf.KernelSigner"/>): the listener's SYN/ACKs then skip the egress queue and carry the proxy's Claim.
    /// A SYN whose SYN/ACK must carry something else (a Defer answering another proxy's probe) gets
    /// <see cref="ResignMark"/> in its verdict; mangle records its handshake in <c>PREFIX_RS4</c>/<c>_RS6</c>, and its
    /// SYN/ACK alone crosses the egress queue, where the engine replaces the option. With <see cref="FastPathIntercept"/>
    /// this is what lets explicit mode intercept in the kernel. Off by default.
    /// </summary>
    public bool KernelSigned { get; init; }

    /// <summary>
    /// The pinned eBPF match (<see cref="Bpf.KernelSigner.JoinMatchPath"/>) for MP_JOIN SYNs whose token this proxy's
    /// listener handed out: raw PREROUTING gives them the intercept mark (TPROXY takes them to the listener, which
    /// authenticates them) instead of queueing them. Null (default): every join is queued.
    /// </summary>
    public string? KernelJoinMatch { get; init; }

    /// <summary>
    /// The pinned eBPF match (<see cref="Bpf.KernelSigner.ForeignJoinMatchPath"/>) for MP_JOIN SYNs whose token is not
    /// this proxy's, while its map is whole: raw PREROUTING accepts them (the connection was passed, so is its join)
    /// instead of queueing them. Null (default): such joins are queued and the engine passes them.
    /// </summary>
    public string? KernelForeignJoinMatch { get; init; }

    /// <summary>
    /// The pinned eBPF gate (<see cref="Bpf.KernelSigner.RstGatePath"/>) on the rule that queues RSTs toward the ports:
    /// it lets them through to the queue only while the engine holds a SYN (a RST matters to it only then, spec §7.2).
    /// Null (default): every RST toward the ports is queued.
    /// </summary>
    public string? KernelRstGate { get; init; }

    /// <summary>Mark bits a verdict sets (beside the intercept mark) on a SYN whose SYN/ACK the engine signs itself.</summary>
    public uint ResignMark { get; init; } = 0x4;

    public uint ResignMask { get; init; } = 0x4;

    /// <summary>Routing table holding <c>local default dev lo</c> for intercepted packets.</summary>
    public int RoutingTable { get; init; } = 100;

    /// <summary>Priority (<c>pref</c>) of the <c>fwmark</c> rule; must sort before <c>main</c> (32766).</summary>
    public int RulePriority { get; init; } = 100;

    /// <summary>Interfaces where the operator's domain ends: MPTCP SYNs and SYN/ACKs leaving by them are queued (egress
    /// queue) so their MP_PROXY options can be stripped (spec §7.12). Empty: none.</summary>
    public IReadOnlyList<string> EdgeInterfaces { get; init; } = [];

    public bool IPv4 { get; init; } = true;

    public bool IPv6 { get; init; } = true;

    /// <summary>Also queue SYN/ACKs coming from the intercepted ports (raw PREROUTING): the answers to the proxy's probes
    /// (a claim from a proxy further on) and SYN/ACKs passing through (what other probers learn). Off by default.</summary>
    public bool QueueSynAcks { get; init; }

    /// <summary>Queue only client SYNs carrying TCP option 30 (MPTCP: MP_CAPABLE, MP_JOIN, MP_PROXY); the rest never leave
    /// the kernel. For a downgrading proxy, which passes every SYN without an MPTCP option (<c>NotMptcp</c>), so its
    /// verdicts stay the same and plain TCP costs no user-space trip. SYN/ACKs: see <see cref="QueueOnlyMptcpSynAcks"/>;
    /// the egress hook is not filtered. Off by default: an upgrading proxy acts on plain TCP SYNs.</summary>
    public bool QueueOnlyMptcpSyns { get; init; }

    /// <summary>With <see cref="QueueSynAcks"/>: queue only SYN/ACKs carrying TCP option 30. For a downgrading proxy,
    /// whose engine learns nothing from a SYN/ACK without one: a probe's MP_CAPABLE comes from the probe socket's
    /// MPTCP_INFO, and what it takes from an answer (a Defer, a claim, MP_CAPABLE on another prober's answer) is an MPTCP
    /// option. A TCP server's answer, to a probe or to a plain TCP client, then stays in the kernel. Off by default: an
    /// upgrading proxy learns "TCP only" from answers without one.</summary>
    public bool QueueOnlyMptcpSynAcks { get; init; }

    /// <summary>How long the kernel remembers a SYN it sent to TPROXY, in seconds (ipset <c>PREFIX_HS4</c>/<c>_HS6</c>,
    /// <c>hash:ip,port,ip</c> of client address, client port and destination address). A segment of such a handshake
    /// that finds no socket — the completing ACK of a connection the listener answered with a SYN cookie because a
    /// flood filled its SYN queue — is then still sent to the listener instead of on to the real server, which would
    /// reset it. Only intercepted handshakes are in the set, so a passed flow is never captured. The proxy sets it to its
    /// adoption timeout (an accept after that is not awaited). 0: no set and no rule (no ipset needed). Default 3.</summary>
    public int HandshakeSetSeconds { get; init; } = 3;

    /// <summary>Most entries the handshake set holds (ipset <c>maxelem</c>); when full, new handshakes are not recorded
    /// and only a SYN-cookie ACK of theirs would be lost (as without the set). Default 65,536.</summary>
    public int HandshakeSetMaxElements { get; init; } = 65536;

    /// <summary>The handshake set's <c>hashsize</c>: <see cref="HandshakeSetMaxElements"/> rounded up to a power of two
    /// (at least ipset's default 1,024, at most 2^20: 8 MiB of kernel bucket pointers). The rule adds entries from the kernel, and a kernel-side add never grows the
    /// table (only userspace adds resize it): with the default 1,024 buckets of 12, a 2,000 SYN/s flood (6,000 live
    /// entries) kept about 2 % of buckets full and their adds failed, so 2 % of cookie-answered handshakes reached the
    /// real server and were reset (issue 12). Sized for the most entries, a bucket fills with negligible odds.</summary>
    public int HandshakeSetHashSize =>
        (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((uint)HandshakeSetMaxElements), 1024u, 1u << 20);

    /// <summary>The kernel fast path's pass verdict: a SYN toward a destination in <c>PREFIX_MP4</c>/<c>_MP6</c>
    /// (ipset <c>hash:ip,port</c>, entries with the cache entry's lifetime, filled by the daemon) passes in raw
    /// PREROUTING without a queue trip — if it carries MP_CAPABLE v1 and no other MPTCP option, no MD5/AO and at most
    /// <see cref="SynOptionFilter.MaxOptions"/> options (<see cref="SynOptionFilter"/>); anything else is queued as
    /// before. Off by default.</summary>
    public bool FastPathPass { get; init; }

    /// <summary>The kernel fast path's intercept verdict: such a SYN toward a destination in <c>PREFIX_TO4</c>/<c>_TO6</c>
    /// gets the intercept mark in raw PREROUTING and goes to TPROXY. Only where the queue would give the same verdict with
    /// nothing more to do: implicit mode (no Claim on the SYN/ACK), or explicit mode with <see cref="KernelSigned"/> (the
    /// kernel writes the Claim). Off by default.</summary>
    public bool FastPathIntercept { get; init; }

    /// <summary>Most entries each fast-path set holds (ipset <c>maxelem</c>); a destination that does not fit is decided
    /// by the queue. Default 65,536.</summary>
    public int FastPathMaxElements { get; init; } = 65536;

    public bool FastPath => FastPathPass || FastPathIntercept;

    public ushort EffectiveEgressQueue => EgressQueueNumber ?? QueueNumber;

    /// <summary>Throws <see cref="ArgumentException"/> for values iptables or ip would refuse or that would clash.</summary>
    public void Validate()
    {
        if (!PrefixRegex().IsMatch(ChainPrefix))
        {
            throw new ArgumentException("ChainPrefix must be 2..16 characters of [A-Z0-9_], starting with a letter", nameof(ChainPrefix));
        }

        if (Ports.Count == 0 || Ports.Contains((ushort)0))
        {
            throw new ArgumentException("Ports must list at least one port, none of them 0", nameof(Ports));
        }

        if (InterceptMask == 0 || (InterceptMark & ~InterceptMask) != 0 || EgressMask == 0 || (EgressMark & ~EgressMask) != 0)
        {
            throw new ArgumentException("marks must be non-empty masks containing their mark bits");
        }

        if ((InterceptMask & EgressMask) != 0)
        {
            throw new ArgumentException("InterceptMask and EgressMask must not share bits");
        }

        if (KernelSigned && (ResignMask == 0 || (ResignMark & ~ResignMask) != 0 || (ResignMask & (InterceptMask | EgressMask)) != 0))
        {
            throw new ArgumentException("ResignMask must be a non-empty mask containing ResignMark and sharing no bit with InterceptMask or EgressMask");
        }

        foreach (var (name, value) in new[] { (nameof(KernelJoinMatch), KernelJoinMatch), (nameof(KernelForeignJoinMatch), KernelForeignJoinMatch), (nameof(KernelRstGate), KernelRstGate) })
        {
            if (value is { } path && (path.Length is 0 or > 500 || path.Any(c => char.IsWhiteSpace(c) || c == '"')))
            {
                // xt_bpf holds at most 512 bytes of path; the restore script takes it as one word.
                throw new ArgumentException($"{name} must be a path of at most 500 characters without spaces or quotes", name);
            }
        }

        if (KernelSigned && HandshakeSetSeconds == 0)
        {
            throw new ArgumentException("KernelSigned needs the handshake sets (HandshakeSetSeconds > 0): the re-sign set shares their lifetime", nameof(KernelSigned));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(RoutingTable, 1, nameof(RoutingTable));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(RoutingTable, 252, nameof(RoutingTable));
        ArgumentOutOfRangeException.ThrowIfLessThan(RulePriority, 1, nameof(RulePriority));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(RulePriority, 32765, nameof(RulePriority));
        ArgumentOutOfRangeException.ThrowIfNegative(HandshakeSetSeconds, nameof(HandshakeSetSeconds));
        // ipset's timeout limit (UINT_MAX / MSEC_PER_SEC) would allow more; a handshake never needs more than the spec's
        // longest adoption timeout, and a small bound keeps the set small.
        ArgumentOutOfRangeException.ThrowIfGreaterThan(HandshakeSetSeconds, 60, nameof(HandshakeSetSeconds));
        ArgumentOutOfRangeException.ThrowIfLessThan(HandshakeSetMaxElements, 1, nameof(HandshakeSetMaxElements));
        ArgumentOutOfRangeException.ThrowIfLessThan(FastPathMaxElements, 1, nameof(FastPathMaxElements));
        if (FastPathIntercept && HandshakeSetSeconds == 0)
        {
            throw new ArgumentException("FastPathIntercept needs the handshake set (HandshakeSetSeconds > 0)", nameof(FastPathIntercept));
        }
        if (!IPv4 && !IPv6)
        {
            throw new ArgumentException("at least one of IPv4 and IPv6");
        }
    }

    [GeneratedRegex("^[A-Z][A-Z0-9_]{1,15}$")]
    private static partial Regex PrefixRegex();
}
