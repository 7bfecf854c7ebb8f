using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>What one proxy instance does; validated by <see cref="Validate"/> before anything touches the kernel.</summary>
public sealed record ProxyEngineOptions
{
    public NegotiatorOptions Negotiation { get; init; } = new();

    /// <summary>Destination ports whose SYNs are queued.</summary>
    public IReadOnlyList<ushort> Ports { get; init; } = [80, 443];

    /// <summary>NFQUEUE number for client SYNs (ingress hook); at most 65534, the next number is the egress queue's.</summary>
    public ushort QueueNumber { get; init; }

    /// <summary>The queue of the proxy's own SYNs and SYN/ACKs (signing, the domain edge): the next one after
    /// <see cref="QueueNumber"/>, so a burst of client SYNs never delays a probe's SYN.</summary>
    public ushort EgressQueueNumber => checked((ushort)(QueueNumber + 1));

    /// <summary>Prefix of the iptables chains; <c>proxysel cleanup</c> must use the same one.</summary>
    public string ChainPrefix { get; init; } = "PSEL";

    /// <summary>Operator key for MP_PROXY tags (explicit mode).</summary>
    public required MpProxyKeyRing KeyRing { get; init; }

    /// <summary>The longest <see cref="AdoptionTimeout"/> the spec allows.</summary>
    public static readonly TimeSpan MaxAdoptionTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long an intercepted connection (its adopted probe, its claim) waits for the client's connection to reach the
    /// listener before it is dropped. Spec: default 3 s, at most 10 s (the client retransmits a lost SYN after 1 s, 3 s).
    /// </summary>
    public TimeSpan AdoptionTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// While this many intercepted connections wait for their accept, an answered probe is not kept as the next one's
    /// upstream leg: it is closed at once and the leg is opened at the accept. A spoofed SYN never completes, so
    /// without the bound each one to a new destination kept a real connection open on its server for the adoption
    /// timeout (spec §11.3: no amplification). As many as <see cref="MaxHeldSyns"/>: a probe closed for the bound is a
    /// second connection its server accepts for one client (issue 13: a 200-client burst decided in time made 22-69 of them
    /// at 128).
    /// </summary>
    public int MaxAdoptedProbes { get; init; } = 256;

    /// <summary>The start's throwaway engine (<c>ProxyEngine.RehearseAsync</c>): its metrics and spans go nowhere.</summary>
    internal bool Rehearsal { get; init; }

    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// SYNs held at once; a SYN that would be held beyond it passes untouched (overload passes, spec §7.2: never hold
    /// beyond the limit). Default 256: 1,024 new destinations a second at the 250 ms hold limit.
    /// </summary>
    public int MaxHeldSyns { get; init; } = 256;

    /// <summary>
    /// Packets waiting in the queue for the engine beyond the held ones: the queue's length is <see cref="MaxHeldSyns"/> plus
    /// this, and the kernel accepts what does not fit untouched (fail-open). A packet waits at most this many packets'
    /// work: 64 is 3 ms at 20k SYN/s, and still 40 ms when a loaded machine gives the engine only 1,500 packets a second
    /// (measured, issue 12: 1,536 in the queue made SYNs wait over 1 s there).
    /// </summary>
    public int QueueWaitRoom { get; init; } = 64;

    /// <summary>
    /// Whether the daemon runs above the host's ordinary work, when permitted (CAP_SYS_NICE, or systemd's LimitNICE=-10
    /// and LimitRTPRIO=1): every thread at nice -10, and the thread that releases overdue holds SCHED_RR priority 1 (it
    /// wakes every 5 ms for a peek at the oldest hold: it takes the host nothing). Every held SYN waits for this process;
    /// on 2 busy vCPUs its normal-priority threads (a lock holder, a collection) stalled it 30-230 ms at a time and 10 %
    /// of holds of a 20k SYN/s flood ended after 250 ms; all threads at nice -10: 2 % (issue 12). Default true.
    /// </summary>
    public bool RaisedScheduling { get; init; } = true;

    /// <summary>
    /// Whether the transparent modes run (NFQUEUE hook, rules, TPROXY listeners). False in the host-configured mode
    /// alone (<c>--mode socks</c>): nothing is intercepted and no rule is installed or removed.
    /// </summary>
    public bool Transparent { get; init; } = true;

    /// <summary>The host-configured mode's SOCKS5 front (spec §7.10), or null for none.</summary>
    public Fronts.SocksOptions? Socks { get; init; }

    /// <summary>
    /// Compile the per-connection code at start, before the queue is bound (<see cref="Hook.Warmup"/>), so that the first
    /// connection after a start is decided like the hundredth. Default true; tests that start many engines turn it off.
    /// </summary>
    public bool Warmup { get; init; } = true;

    /// <summary>
    /// Interfaces where the operator's domain ends (spec §7.12): SYNs and SYN/ACKs leaving by them, forwarded or the proxy's
    /// own, lose every MP_PROXY option. Empty (default): none.
    /// </summary>
    public IReadOnlyList<string> EdgeInterfaces { get; init; } = [];

    /// <summary>
    /// The kernel fast path (issue 13; a downgrading proxy only): SYNs whose verdict the capability cache already gives
    /// from the destination alone are decided in raw PREROUTING from ipsets the engine keeps in step with the cache
    /// (<see cref="Kernel.KernelCacheMirror"/>) — pass toward a known MPTCP server; in implicit mode also intercept toward
    /// a known TCP-only one (explicit mode too with <see cref="KernelSigning"/>: the kernel writes the Claim). SYNs with
    /// MP_PROXY, MP_JOIN, MD5/AO or more options than the kernel filter walks still go to the queue. Off by default.
    /// </summary>
    public bool KernelFastPath { get; init; }

    /// <summary>
    /// The kernel writes the proxy's own signed MP_PROXY (issue 13; explicit mode): the Claim on the transparent listeners'
    /// SYN/ACKs and the Claim or Upgrade on the upstream legs' SYNs, from a cgroup <c>sock_ops</c> program
    /// (<see cref="Interception.Bpf.KernelSigner"/>), so a held connection crosses no egress queue, and with
    /// <see cref="KernelFastPath"/> a known TCP-only destination is intercepted without any queue trip. Probes and probe
    /// answers (a Defer) are still signed by the engine. The process moves into a cgroup of its own (the embedding host's
    /// decision: off by default here). A kernel that refuses is logged and the egress queue signs as before.
    /// </summary>
    public bool KernelSigning { get; init; }

    /// <summary>
    /// With <see cref="KernelSigning"/>: MP_JOINs of connections this proxy holds are sent to its listener in the kernel
    /// (issue 13): the egress programs learn the tokens of the listener's MPTCP SYN/ACKs into a bounded map (an ended
    /// connection's token leaves it, a handshake's that never became one is swept after
    /// <see cref="Kernel.KernelSigning.HandshakeAge"/>), and a raw-table eBPF match gives a join for such a token the
    /// intercept mark instead of queueing it (counted as <c>joins_kernel</c>). While the map holds every token this
    /// proxy handed out, a second match passes joins for other tokens in the kernel (<c>joins_passed_kernel</c>); not
    /// with <see cref="EdgeInterfaces"/> (a SYN/ACK leaving by an edge is not learnt), and closed for
    /// <see cref="Kernel.KernelSigning.HandshakeAge"/> after the map was full or an interface came up. A kernel that
    /// refuses is logged, and every join crosses the queue. Off by default.
    /// </summary>
    public bool KernelJoins { get; init; }

    /// <summary>Where the engine's structured events go (the lab and the tests read them); none by default.</summary>
    public Diagnostics.IProxyEventSink Events { get; init; } = Diagnostics.NullProxyEventSink.Instance;

    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>(Negotiation.Validate());
        if (Ports.Count == 0 || Ports.Contains((ushort)0))
        {
            errors.Add("Ports must list at least one port, none of them 0.");
        }

        if (AdoptionTimeout <= TimeSpan.Zero || IdleTimeout <= TimeSpan.Zero)
        {
            errors.Add("AdoptionTimeout and IdleTimeout must be positive.");
        }

        if (AdoptionTimeout > MaxAdoptionTimeout)
        {
            errors.Add($"AdoptionTimeout must be at most {MaxAdoptionTimeout.TotalSeconds:F0} s (spec).");
        }

        if (MaxAdoptedProbes < 0)
        {
            errors.Add("MaxAdoptedProbes must not be negative.");
        }

        if (MaxHeldSyns is < 1 or > 1 << 20 || QueueWaitRoom is < 16 or > 1 << 20)
        {
            errors.Add($"MaxHeldSyns must be within 1..{1 << 20} and QueueWaitRoom within 16..{1 << 20}.");
        }

        if (EdgeInterfaces.Any(n => string.IsNullOrWhiteSpace(n) || n.Length > 15 || n.Contains('/') || n.Any(char.IsWhiteSpace)))
        {
            errors.Add("EdgeInterfaces must be interface names (1..15 characters, no '/' or space).");
        }

        if (!Transparent && Socks is null)
        {
            errors.Add("A proxy that intercepts nothing needs the SOCKS front.");
        }

        return errors;
    }
}
