using System.Net;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>The engine's state as an operator sees it (the control socket), and the drain state.</summary>
public sealed partial class ProxyEngine
{
    private int _draining;

    /// <summary>True once <see cref="StopClaiming"/> ran: new flows pass untouched, joins of held connections are still taken.</summary>
    public bool IsDraining => Volatile.Read(ref _draining) != 0;

    /// <summary>
    /// The first half of a graceful stop: from here on no new connection is claimed, while MP_JOINs whose token this
    /// proxy owns are still intercepted, so a held MPTCP connection that opens a subflow during the drain keeps it. The
    /// SOCKS/Convert fronts serve what reaches them for their grace, then close (<see cref="DrainPending"/> counts them).
    /// </summary>
    public void StopClaiming()
    {
        Volatile.Write(ref _draining, 1);
        // The kernel's intercepts too (explicit or implicit fast path): new connections to known TCP-only servers pass.
        _kernelMirror?.StopIntercepting();
        DrainFronts();
    }

    /// <summary>The connections the relay carries now, with why each was held and what the kernel says of its MPTCP leg.</summary>
    public IReadOnlyList<HeldConnection> HeldConnections()
    {
        var held = new List<HeldConnection>();
        bool clientIsMptcp = ClientProtocol == TransportProtocol.Mptcp;
        foreach (var connection in _relay.Connections)
        {
            if (connection.ClientEndPoint is not { } client || connection.LocalEndPoint is not { } destination)
            {
                continue;
            }

            var decided = _flows.TryGet(new FlowEndPoints(client, destination), out var flow) && flow.State == ProxySelection.Engine.Flows.FlowState.Relaying ? flow : null;
            held.Add(new HeldConnection(
                client,
                destination,
                _options.Negotiation.Role,
                decided?.Reason,
                decided is null ? null : _time.GetElapsedTime(decided.DecidedAt),
                connection.BytesClientToUpstream,
                connection.BytesUpstreamToClient,
                clientIsMptcp ? "client" : "upstream",
                clientIsMptcp ? connection.ClientMptcp() : connection.UpstreamMptcp()));
        }

        foreach (var connection in _frontRelay?.Connections ?? [])
        {
            // The host named the destination: it is the upstream leg's peer, not the listener's address.
            if (connection.ClientEndPoint is { } client && connection.UpstreamEndPoint is { } server)
            {
                if (client.Address.IsIPv4MappedToIPv6)
                {
                    client = new IPEndPoint(client.Address.MapToIPv4(), client.Port);
                }

                TimeSpan? age = _frontAccepted.TryGetValue(new FlowEndPoints(client, server), out var at) ? _time.GetElapsedTime(at) : null;
                held.Add(new HeldConnection(client, server, _options.Negotiation.Role, null, age, connection.BytesClientToUpstream,
                    connection.BytesUpstreamToClient, "client", connection.ClientMptcp()) { Mode = HostConfiguredMode });
            }
        }

        return held;
    }

    /// <summary>The mode name of SOCKS connections in status entries and traces.</summary>
    public const string HostConfiguredMode = "host-configured";
}

/// <summary>One relayed connection: the flow, why it was held, its age and bytes, and the MPTCP leg's kernel state.</summary>
public sealed record HeldConnection(
    IPEndPoint Client,
    IPEndPoint Destination,
    ProxyRole Role,
    DecisionReason? Reason,
    TimeSpan? Age,
    long BytesClientToUpstream,
    long BytesUpstreamToClient,
    string MptcpLeg,
    MptcpSnapshot Mptcp)
{
    /// <summary><c>host-configured</c> for a SOCKS connection; null for an intercepted one (the daemon's mode).</summary>
    public string? Mode { get; init; }
}
