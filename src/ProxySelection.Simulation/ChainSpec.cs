using System.Globalization;
using System.Text;

namespace ProxySelection.Negotiation.Simulation;

/// <summary>One element between the client and the server.</summary>
public abstract record HopSpec;

/// <summary>
/// A proxy running the real <see cref="ProxyNegotiator"/>. <see cref="SignalingMode.Implicit"/> makes it a
/// non-P-aware (stock) proxy; <see cref="ForeignKey"/> gives it another operator's key, so nobody on the
/// path can verify its signals nor it theirs; <see cref="ReturnBypasses"/> routes SYN/ACKs and RSTs toward
/// the client around it (asymmetric routing), except those of its own connections.
/// </summary>
public sealed record ProxyHop(
    byte ProxyId,
    ProxyRole Role,
    SelectionPolicy Policy = SelectionPolicy.First,
    byte Priority = 8,
    bool AtCapacity = false,
    SignalingMode Mode = SignalingMode.Explicit,
    bool ForeignKey = false,
    bool ReturnBypasses = false) : HopSpec
{
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"P{ProxyId}[{(Role == ProxyRole.Downgrade ? "down" : "up")},{Policy},prio {Priority}{(AtCapacity ? ",FULL" : "")}{(Mode == SignalingMode.Implicit ? ",implicit" : "")}{(ForeignKey ? ",foreign-key" : "")}{(ReturnBypasses ? ",asymmetric" : "")}]");
}

public enum MiddleboxBehavior
{
    /// <summary>Removes MP_PROXY (an MPTCP-aware box that drops unknown subtypes), both directions.</summary>
    StripMpProxy,

    /// <summary>Removes every MPTCP option (a box that strips unknown TCP options): MPTCP falls back to TCP across it.</summary>
    StripMptcp,

    /// <summary>Drops the first probe SYN that crosses it.</summary>
    LoseFirstProbe,

    /// <summary>Drops the first SYN/ACK answering a probe that crosses it.</summary>
    LoseFirstProbeAnswer,

    /// <summary>Puts an MP_PROXY signed with another key on every SYN and SYN/ACK (replacing any there).</summary>
    ForgeWrongKey,

    /// <summary>Replaces MP_PROXY with one correctly signed for ANOTHER flow (a replayed tag).</summary>
    ReplayOtherFlow,

    /// <summary>Puts a correctly signed MP_PROXY cut short (length byte says more than is there).</summary>
    TruncateOption,

    /// <summary>Puts a correctly signed MP_PROXY whose length byte is larger than any defined form.</summary>
    OversizeOption,

    /// <summary>Puts a correctly signed MP_PROXY with an unknown version.</summary>
    UnknownVersion,

    /// <summary>Forwards everything unchanged (a baseline: a hop that only adds latency).</summary>
    Forward,

    /// <summary>
    /// Adds another private experiment's subtype-0xF option (experiment id 0x5A, version 2, 6 bytes) to every SYN and
    /// SYN/ACK, beside whatever MP_PROXY is there (spec §5.6: skipped, never a duplicate).
    /// </summary>
    AddForeignExperiment,
}

public sealed record MiddleboxHop(MiddleboxBehavior Behavior) : HopSpec
{
    public bool IsSpoofer => Behavior is >= MiddleboxBehavior.ForgeWrongKey and <= MiddleboxBehavior.UnknownVersion;

    public override string ToString() => Behavior.ToString();
}

/// <summary>A client, the hops in path order (nearest the client first), a server; links of equal latency.</summary>
public sealed record ChainSpec(bool ClientMptcp, bool ServerMptcp, IReadOnlyList<HopSpec> Hops)
{
    /// <summary>One-way latency of every link. Default 5 ms.</summary>
    public TimeSpan LinkLatency { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Connections opened one after another (the first finds cold caches, the next warm ones). Default 2.</summary>
    public int Connections { get; init; } = 2;

    /// <summary>Probe timeout every proxy uses. Default 250 ms.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromMilliseconds(250);

    public IEnumerable<ProxyHop> Proxies => Hops.OfType<ProxyHop>();

    public override string ToString()
    {
        var text = new StringBuilder();
        text.Append(ClientMptcp ? "C(mptcp)" : "C(tcp)");
        foreach (var hop in Hops)
        {
            text.Append(" -> ").Append(hop);
        }

        text.Append(ServerMptcp ? " -> S(mptcp)" : " -> S(tcp)");
        return text.ToString();
    }
}
