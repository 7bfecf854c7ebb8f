namespace ProxySelection.Negotiation;

/// <summary>Which side of the multipath stretch a proxy terminates.</summary>
public enum ProxyRole
{
    /// <summary>MPTCP client toward a TCP-only server: terminate MPTCP, talk TCP upstream (aggregation gateway).</summary>
    Downgrade,

    /// <summary>TCP client: terminate TCP, open MPTCP toward the server (home router / CPE).</summary>
    Upgrade,
}

/// <summary>How proxies on one path agree which of them acts (design §4.5).</summary>
public enum SelectionPolicy
{
    /// <summary>The first capable proxy from the client acts; proxies further on never pre-empt a probe.</summary>
    First,

    /// <summary>The capable proxy nearest the server acts: every proxy pre-empts a probe from upstream.</summary>
    NearestServer,

    /// <summary>The highest priority acts; on a tie the proxy nearest the client (first position) keeps it.</summary>
    Priority,
}

/// <summary>Whether the proxy speaks MP_PROXY.</summary>
public enum SignalingMode
{
    /// <summary>MP_PROXY on probes, claims and defers; verified signals steer selection (the default).</summary>
    Explicit,

    /// <summary>No MP_PROXY at all, none parsed: a stock, non-P-aware proxy (for comparison and for stock peers).</summary>
    Implicit,
}

/// <summary>Capability cache bounds and lifetimes.</summary>
public sealed class CapabilityCacheOptions
{
    /// <summary>Most destinations kept; the least recently used goes first. Default 65,536 (about 5 MB).</summary>
    public int MaxEntries { get; set; } = 65_536;

    /// <summary>How long "the server speaks MPTCP" holds. Default 10 minutes.</summary>
    public TimeSpan MptcpCapableTtl { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long "the server is TCP-only" holds. Default 10 minutes.</summary>
    public TimeSpan TcpOnlyTtl { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long "another proxy further on acts" holds. Shorter than the server facts: it depends on that proxy's
    /// load and liveness, and while it holds this proxy passes the destination's SYNs. Default 2 minutes.
    /// </summary>
    public TimeSpan ProxyBeyondTtl { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Negative entry after a probe timed out or was reset: pass without probing meanwhile, so an unreachable or
    /// filtered destination does not cost every client a held SYN. Default 30 seconds.
    /// </summary>
    public TimeSpan UnresolvedTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long an unconfirmed fact holds: one learnt from an observed SYN/ACK (the answer to another proxy's probe, spec
    /// §7.6), or a server fact from a single own probe (spec §6). Short: an on-path party that saw the probe could have
    /// forged the one answer, so the fact is soon re-checked by an own probe, and only one that agrees gives the full
    /// life. Within 1 s..<see cref="ProxyBeyondTtl"/>. Default 60 seconds.
    /// </summary>
    public TimeSpan ObservedTtl { get; set; } = TimeSpan.FromSeconds(60);

    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (MaxEntries is < 1 or > 1 << 22)
        {
            errors.Add($"Cache.MaxEntries must be within 1..{1 << 22} (was {MaxEntries}).");
        }

        CheckTtl(errors, nameof(MptcpCapableTtl), MptcpCapableTtl);
        CheckTtl(errors, nameof(TcpOnlyTtl), TcpOnlyTtl);
        CheckTtl(errors, nameof(ProxyBeyondTtl), ProxyBeyondTtl);
        CheckTtl(errors, nameof(UnresolvedTtl), UnresolvedTtl);
        if (ObservedTtl < TimeSpan.FromSeconds(1) || ObservedTtl > ProxyBeyondTtl)
        {
            errors.Add($"Cache.{nameof(ObservedTtl)} must be within 1 s..Cache.{nameof(ProxyBeyondTtl)} (was {ObservedTtl}).");
        }

        return errors;
    }

    private static void CheckTtl(List<string> errors, string name, TimeSpan value)
    {
        if (value < TimeSpan.FromSeconds(1) || value > TimeSpan.FromDays(1))
        {
            errors.Add($"Cache.{name} must be within 1 s..1 day (was {value}).");
        }
    }
}

/// <summary>One proxy's negotiation settings; validated at start (<see cref="EnsureValid"/>).</summary>
public sealed class NegotiatorOptions
{
    /// <summary>Lowest accepted probe timeout: below a few round trips every probe would time out.</summary>
    public static readonly TimeSpan MinProbeTimeout = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// Highest accepted probe timeout. The client retransmits its SYN after 1 s and a client that loses two
    /// MP_CAPABLE SYNs falls back to TCP (and Linux disables MPTCP toward the path for an hour). Two proxies that
    /// lose their probes in turn delay the client's SYN/ACK by 2 x timeout + the path's round trip (spec §8.3):
    /// 400 ms keeps that below 1 s for any path round trip under 200 ms (450 ms reached 1 s at 100 ms).
    /// </summary>
    public static readonly TimeSpan MaxProbeTimeout = TimeSpan.FromMilliseconds(400);

    /// <summary>This proxy's id in MP_PROXY (1..255; 0 means "none" on the wire). Default 1.</summary>
    public byte ProxyId { get; set; } = 1;

    /// <summary>Priority 0..15 for <see cref="SelectionPolicy.Priority"/>; higher wins. Default 8.</summary>
    public byte Priority { get; set; } = 8;

    /// <summary>Connections this proxy holds at most; at the limit it defers (passes). Default 10,000.</summary>
    public int MaxConnections { get; set; } = 10_000;

    public ProxyRole Role { get; set; } = ProxyRole.Downgrade;

    /// <summary>Default <see cref="SelectionPolicy.First"/>: one probe, no nesting, the fewest round trips.</summary>
    public SelectionPolicy Policy { get; set; } = SelectionPolicy.First;

    public SignalingMode Mode { get; set; } = SignalingMode.Explicit;

    /// <summary>How long a SYN is held while its probe is out. Default 250 ms (a quarter of the SYN RTO).</summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Kept back from <see cref="ProbeTimeout"/> for a busy host: the probe's deadline fires at ProbeTimeout minus this, so
    /// a timer that runs late still releases the SYN within ProbeTimeout. Default zero; the daemon keeps a fifth back.
    /// </summary>
    public TimeSpan ReleaseMargin { get; set; }

    /// <summary>When a probe's deadline fires, counted from its start.</summary>
    public TimeSpan ProbeDeadline => ProbeTimeout - ReleaseMargin;

    /// <summary>
    /// How long a probe from another proxy that passed through here makes this proxy pass the destination's SYNs
    /// (so a SYN its prober released is not held a second time). Twice the probe timeout.
    /// </summary>
    public TimeSpan ProbedByOtherTtl => ProbeTimeout * 2;

    /// <summary>
    /// Probes out at once, at most. Beyond it a SYN that would start a probe passes untouched (spec §6), so a SYN
    /// flood toward random destinations cannot make the proxy hold without bound. Default 4,096.
    /// </summary>
    public int MaxProbesInFlight { get; set; } = 4096;

    /// <summary>SYNs waiting on one probe, at most; further SYNs for that destination pass untouched. Default 256.</summary>
    public int MaxHeldPerProbe { get; set; } = 256;

    /// <summary>
    /// Probes per second that SYNs from one source prefix (IPv4 /24, IPv6 /56) may start, with a burst of one second's
    /// worth (spec §7.5.1). A SYN whose probe would exceed it passes untouched. Default 64.
    /// </summary>
    public double ProbeRatePerSourcePrefix { get; set; } = 64;

    /// <summary>
    /// Probes per second toward one destination, with a burst of one second's worth (spec §7.5.1): bounds what the proxy
    /// sends toward one victim when the cache keeps being evicted. Default 16.
    /// </summary>
    public double ProbeRatePerDestination { get; set; } = 16;

    /// <summary>
    /// Probes per second this proxy starts in all, with a burst of one second's worth (spec §11.3): the per-prefix and
    /// per-destination limits multiply with the number of prefixes a spoofer uses, this one does not, so it bounds what a
    /// flood over any number of sources and destinations makes the proxy send toward one server farm. A SYN whose probe
    /// would exceed it passes untouched. 0 turns it off. Default 512: a home router's clients open far fewer new
    /// destinations a second, and on an aggregation gateway it is five times the rate at which the default cache
    /// (65,536 entries, 10 minutes) turns over, so beyond it probes would only evict facts still in use.
    /// </summary>
    public double ProbeRateGlobal { get; set; } = 512;

    /// <summary>
    /// Source prefixes and destinations whose probe rate is tracked, at most, per table. A bucket idle long enough to
    /// be full again is forgotten; when the table is full of live buckets a new key's probe is refused (its SYN passes
    /// untouched), so a flood over any number of sources or destinations keeps the state bounded. Default 65,536.
    /// </summary>
    public int ProbeRateTableEntries { get; set; } = 65_536;

    public CapabilityCacheOptions Cache { get; set; } = new();

    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (MaxProbesInFlight is < 1 or > 1 << 20)
        {
            errors.Add($"MaxProbesInFlight must be within 1..{1 << 20} (was {MaxProbesInFlight}).");
        }

        if (MaxHeldPerProbe is < 1 or > 1 << 16)
        {
            errors.Add($"MaxHeldPerProbe must be within 1..{1 << 16} (was {MaxHeldPerProbe}).");
        }

        CheckRate(errors, nameof(ProbeRatePerSourcePrefix), ProbeRatePerSourcePrefix);
        CheckRate(errors, nameof(ProbeRatePerDestination), ProbeRatePerDestination);
        if (ProbeRateGlobal != 0)
        {
            CheckRate(errors, nameof(ProbeRateGlobal), ProbeRateGlobal);
        }

        if (ProbeRateTableEntries is < 1 or > 1 << 22)
        {
            errors.Add($"ProbeRateTableEntries must be within 1..{1 << 22} (was {ProbeRateTableEntries}).");
        }

        if (ProxyId == 0)
        {
            errors.Add("ProxyId must be 1..255 (0 is reserved for \"no proxy\").");
        }

        if (Priority > 15)
        {
            errors.Add($"Priority must be 0..15 (was {Priority}); the wire field is 4 bits.");
        }

        if (MaxConnections < 1)
        {
            errors.Add($"MaxConnections must be at least 1 (was {MaxConnections}).");
        }

        if (ProbeTimeout < MinProbeTimeout || ProbeTimeout > MaxProbeTimeout)
        {
            errors.Add($"ProbeTimeout must be within {MinProbeTimeout.TotalMilliseconds}..{MaxProbeTimeout.TotalMilliseconds} ms (was {ProbeTimeout.TotalMilliseconds} ms).");
        }

        if (ReleaseMargin < TimeSpan.Zero || ReleaseMargin > ProbeTimeout / 2)
        {
            errors.Add($"ReleaseMargin must be within 0..ProbeTimeout/2 (was {ReleaseMargin.TotalMilliseconds} ms).");
        }

        if (!Enum.IsDefined(Role) || !Enum.IsDefined(Policy) || !Enum.IsDefined(Mode))
        {
            errors.Add("Role, Policy and Mode must be defined values.");
        }

        if (Cache is null)
        {
            errors.Add("Cache must be set.");
        }
        else
        {
            errors.AddRange(Cache.Validate());
        }

        return errors;
    }

    private static void CheckRate(List<string> errors, string name, double perSecond)
    {
        if (!double.IsFinite(perSecond) || perSecond <= 0 || perSecond > 1_000_000)
        {
            errors.Add($"{name} must be above 0 and at most 1,000,000 probes per second (was {perSecond}).");
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> listing every invalid setting.</summary>
    public void EnsureValid()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid negotiation options: " + string.Join(" ", errors));
        }
    }
}
