using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Fronts;

/// <summary>The proxy's shared connection limit, as a front sees it (a drain is the front's own: <see cref="HostConfiguredFront.BeginDrain"/>).</summary>
public interface IFrontAdmission
{
    /// <summary>A slot of the limit the transparent mode shares; taken only for a parsed, authenticated request.</summary>
    bool TryTakeSlot();

    /// <summary>Gives back a slot <see cref="TryTakeSlot"/> took.</summary>
    void ReleaseSlot();

    /// <summary>A front connection's task, for the proxy to await at its stop.</summary>
    void Track(Task connection);
}

/// <summary>The upstream leg of a front.</summary>
public interface IFrontUpstream
{
    /// <summary>MPTCP toward a server the capability cache knows speaks it, else TCP (spec §7.10).</summary>
    TransportProtocol ProtocolFor(IPEndPoint destination);

    /// <summary>Connects the leg (its SYN signed with the proxy's Claim where the proxy signs legs); a failure reports its ICMP error.</summary>
    ValueTask<UpstreamConnectResult> ConnectAsync(IPEndPoint destination, TransportProtocol protocol, CancellationToken cancellationToken);

    /// <summary>An MPTCP leg failed: the cache forgets what it knew of the server.</summary>
    void OnUpstreamFailed(IPEndPoint destination);
}

/// <summary>What a front reports: the connection count, its trace, the status's age of a relayed connection.</summary>
public interface IFrontTelemetry
{
    void Accepted();

    ConnectionTrace? Started(IPEndPoint? client, Socks5Target target, uint token, string? user, string front);

    void UpstreamConnected(ConnectionTrace trace, Socket upstream);

    /// <summary>The relay of (client, server) starts; <paramref name="acceptedAt"/> is the accept's timestamp.</summary>
    void Relaying(FlowEndPoints flow, long acceptedAt);

    /// <summary>The relay of (client, server) ended, whichever way.</summary>
    void RelayEnded(FlowEndPoints flow);

    void Relayed(ConnectionTrace? trace, RelayResult result);
}

/// <summary>
/// What every front of one proxy shares. <c>Listener</c> is the listeners' transport: MPTCP (TCP where the kernel has
/// none); TCP in tests on loopback. <c>Stopping</c> is the proxy's stop.
/// </summary>
public sealed record FrontServices(
    IFrontAdmission Admission,
    IFrontUpstream Upstream,
    IFrontTelemetry Telemetry,
    RelayServer Relay,
    SourceLimits Limits,
    LocalAddresses LocalAddresses,
    LogBudget LogBudget,
    TimeProvider Time,
    ILogger Log,
    CancellationToken Stopping,
    TransportProtocol Listener = TransportProtocol.Mptcp);
