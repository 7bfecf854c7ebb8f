using System.Globalization;
using System.Net;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Diagnostics;

/// <summary>
/// The engine's <see cref="ProxyEvent"/>s, one builder per event name (<see cref="ProxyEvent"/> lists them); callers
/// check <see cref="IProxyEventSink.Enabled"/> first so nothing is built when nobody reads.
/// </summary>
internal sealed class EngineEvents(IProxyEventSink sink, TimeProvider time)
{
    public bool Enabled => sink.Enabled;

    public void Syn(FlowEndPoints flow, SynKind kind, uint token, string verdict, string reason) => sink.Write(new ProxyEvent
    {
        Event = "syn", Time = time.GetUtcNow(), Client = flow.Client.ToString(), Destination = flow.Destination.ToString(),
        Kind = kind.ToString(), Token = kind == SynKind.MpJoin ? Hex(token) : null, Verdict = verdict, Reason = reason,
    });

    public void Probe(long probeId, IPEndPoint destination, string outcome, bool mpCapable, ProxySignal? signal) => sink.Write(new ProxyEvent
    {
        Event = "probe", Time = time.GetUtcNow(), ProbeId = probeId, Destination = destination.ToString(), Outcome = outcome, MpCapable = mpCapable,
        Signal = signal?.Kind.ToString(), SignalProxy = signal?.ProxyId,
    });

    public void Hold(FlowEndPoints flow, HoldOutcome outcome, DecisionReason reason, TimeSpan held) => sink.Write(new ProxyEvent
    {
        Event = "hold", Time = time.GetUtcNow(), Client = flow.Client.ToString(), Destination = flow.Destination.ToString(),
        Outcome = outcome.ToString(), Reason = reason.ToString(), Milliseconds = held.TotalMilliseconds,
    });

    public void Join(FlowEndPoints flow, uint token, string verdict, string reason) => sink.Write(new ProxyEvent
    {
        Event = "join", Time = time.GetUtcNow(), Client = flow.Client.ToString(), Destination = flow.Destination.ToString(), Token = Hex(token),
        Verdict = verdict, Reason = reason,
    });

    /// <param name="flow">The accepted connection.</param>
    /// <param name="token">This proxy's MPTCP token of the client leg; null for a plain TCP client leg (the upgrade role).</param>
    public void Accepted(FlowEndPoints flow, uint? token) => sink.Write(new ProxyEvent
    {
        Event = "accepted", Time = time.GetUtcNow(), Client = flow.Client.ToString(), Destination = flow.Destination.ToString(),
        Token = token is uint t ? Hex(t) : null,
    });

    public void Expired(FlowEndPoints flow, string reason) => sink.Write(new ProxyEvent
    {
        Event = "expired", Time = time.GetUtcNow(), Client = flow.Client.ToString(), Destination = flow.Destination.ToString(), Reason = reason,
    });

    public void Relay(RelayResult result) => sink.Write(new ProxyEvent
    {
        Event = "relay", Time = time.GetUtcNow(), Client = result.Client?.ToString(), Destination = result.OriginalDestination?.ToString(),
        Reason = result.Reason.ToString(), Up = result.BytesClientToUpstream, Down = result.BytesUpstreamToClient, Subflows = result.ClientMaxSubflows,
        UpstreamSubflows = result.UpstreamMaxSubflows, ClientMptcp = result.ClientMptcp.Status.ToString(),
        UpstreamMptcp = result.UpstreamMptcp.Status.ToString(), Connect = result.ConnectStatus.ToString(),
        ConnectMilliseconds = result.ConnectTime?.TotalMilliseconds, Milliseconds = result.Duration.TotalMilliseconds,
    });

    private static string Hex(uint token) => token.ToString("x8", CultureInfo.InvariantCulture);
}
