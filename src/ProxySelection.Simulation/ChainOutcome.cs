using System.Globalization;
using System.Text;

namespace ProxySelection.Negotiation.Simulation;

/// <summary>A proxy that terminated the client's connection (one leg of it) and opened the next leg.</summary>
public readonly record struct Holder(int HopIndex, byte ProxyId, ProxyRole Role)
{
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"P{ProxyId}({(Role == ProxyRole.Downgrade ? "down" : "up")})@hop{HopIndex}");
}

/// <summary>What happened to one client connection.</summary>
public sealed record ConnectionOutcome
{
    public int Index { get; init; }

    /// <summary>The client got its SYN/ACK and every leg up to the server was established.</summary>
    public bool Completed { get; init; }

    /// <summary>The client's SYN/ACK carried MP_CAPABLE (the client runs MPTCP to whoever answered).</summary>
    public bool ClientGotMptcp { get; init; }

    /// <summary>No proxy terminated it and both ends agreed MPTCP.</summary>
    public bool MptcpEndToEnd { get; init; }

    /// <summary>The proxies that terminated a leg, in path order.</summary>
    public IReadOnlyList<Holder> Holders { get; init; } = [];

    /// <summary>Proxies that held a SYN or intercepted anything during setup (the analysis' "context at initial subflow setup").</summary>
    public int ContextHolders { get; init; }

    /// <summary>Connections opened by proxies toward the server that did not end up carrying the client's data.</summary>
    public int ExtraUpstreamConnections { get; init; }

    /// <summary>Probe SYNs sent by all proxies.</summary>
    public int Probes { get; init; }

    /// <summary>From the client's SYN to its SYN/ACK.</summary>
    public TimeSpan SetupTime { get; init; }

    /// <summary>Client-to-server round trip with no proxy acting (every link crossed twice).</summary>
    public TimeSpan DirectRoundTrip { get; init; }

    /// <summary>(setup time − direct round trip) / direct round trip; negative when a proxy answered nearer the client.</summary>
    public double RoundTripsAdded => DirectRoundTrip == TimeSpan.Zero ? 0 : (SetupTime - DirectRoundTrip) / DirectRoundTrip;

    /// <summary>The client verified an MP_PROXY claim on its SYN/ACK.</summary>
    public bool ClientSawClaim { get; init; }

    /// <summary>Each MPTCP stretch's MP_JOIN reached that stretch's terminator and no one else.</summary>
    public bool JoinsLanded { get; init; }

    /// <summary>Property violations the simulator itself detected (pass-through touched, leaked holds, ...).</summary>
    public IReadOnlyList<string> Violations { get; init; } = [];

    public override string ToString()
    {
        var holders = Holders.Count == 0 ? "none" : string.Join(",", Holders);
        return string.Create(CultureInfo.InvariantCulture,
            $"#{Index}: completed={Completed} mptcpE2E={MptcpEndToEnd} clientMptcp={ClientGotMptcp} holders={holders} context={ContextHolders} extra={ExtraUpstreamConnections} probes={Probes} setup={SetupTime.TotalMilliseconds}ms joins={JoinsLanded}{(Violations.Count > 0 ? " VIOLATIONS: " + string.Join("; ", Violations) : "")}");
    }
}

public sealed record ChainOutcome(ChainSpec Spec, int Seed, IReadOnlyList<ConnectionOutcome> Connections)
{
    public override string ToString()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"seed {Seed}: {Spec}");
        foreach (var connection in Connections)
        {
            text.AppendLine().Append("  ").Append(connection);
        }

        return text.ToString();
    }
}
