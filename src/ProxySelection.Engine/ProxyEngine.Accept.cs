using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Flows;
using ProxySelection.Engine.Hook;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>The transparent listeners' side: an intercepted connection arrives, takes its slot, is relayed and ends.</summary>
public sealed partial class ProxyEngine
{
    /// <summary>The listener accepted <paramref name="client"/> (tests hand in a connected loopback socket).</summary>
    internal async Task OnAcceptedAsync(Socket client, ListenerKey key)
    {
        // No Task.Yield: the part before the upstream connect's first wait is short, and a thread-pool hop per connection
        // cost a futex wake, a context switch and a worker spinning in sched_yield (28 calls per held connection, bench
        // 12:57 UTC 2026-12-07), as the relay measured for its own accept (RelayServer.HandleAcceptedAsync).
        try
        {
            await RelayAcceptedAsync(client).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The client went before its endpoints could be read.
            client.Dispose();
        }
    }

    private async Task RelayAcceptedAsync(Socket client)
    {
        var endPoints = new FlowEndPoints((IPEndPoint)client.RemoteEndPoint!, (IPEndPoint)client.LocalEndPoint!);
        if (!_flows.TryGet(endPoints, out var flow) || flow.State is not (FlowState.AwaitingAccept or FlowState.AnsweredProbe))
        {
            // Arrived after its deadline (or its flow was superseded): it is relayed all the same, as a flow of its own.
            flow = _flows.Add(endPoints);
            flow.TryIntercept(DecisionReason.None, claim: null, probe: null, upstreamSignal: null);
        }

        if (flow.IsAnsweredProbe)
        {
            // Another proxy's probe that this proxy answered: nothing to relay; the prober resets it.
            await DrainAsync(client).ConfigureAwait(false);
            flow.Shutdown(FlowCloseReasons.ProbeAnswerDone);
            return;
        }

        // The token is registered before the flow stops awaiting its accept: a foreign-token join decided meanwhile sees
        // one or the other, so it is parked (and then taken over) rather than passed.
        uint token = 0;
        bool registered = false;
        bool clientMptcp = MptcpSocket.TryGetInfo(client, out var info) == MptcpStatus.Active;
        if (clientMptcp)
        {
            // MP_JOINs name the connection by this proxy's token (RFC 8684 §3.2): from here on they are intercepted.
            token = info.Token;
            lock (_parkedJoins.Gate)
            {
                registered = _negotiator.Tokens.Register(token);
            }
        }

        if (!flow.TryStartRelay(out var probe))
        {
            // No slot (the limit was reached between the intercept and the accept): the client is reset, not served half.
            if (registered)
            {
                _negotiator.Tokens.Unregister(token);
                _kernelSigning?.JoinTokenEnded(token);
            }

            CloseAbortively(client);
            _telemetry.Abandoned(endPoints, flow.CloseReason ?? FlowCloseReasons.AtCapacity);
            if (_events.Enabled)
            {
                _events.Expired(endPoints, flow.CloseReason ?? FlowCloseReasons.AtCapacity);
            }

            return;
        }

        try
        {
            if (_log.IsEnabled(LogLevel.Debug))
            {
                ProxyEngineLog.Accepted(_log, endPoints.Client, endPoints.Destination, token);
            }

            if (_events.Enabled)
            {
                _events.Accepted(endPoints, clientMptcp ? token : null);
            }

            var trace = _telemetry.Accepted(endPoints, token);
            flow.Trace = trace;
            if (registered)
            {
                AdoptParkedJoins(token);
            }

            var result = probe?.Socket is { } adopted
                ? await RelayAdoptedAsync(client, adopted, trace).ConfigureAwait(false)
                : await ConnectAndRelayAsync(client, trace, flow.UpstreamSignal).ConfigureAwait(false);
            Counters.AddRelayed();
            if (_log.IsEnabled(LogLevel.Debug))
            {
                ProxyEngineLog.Relayed(_log, result.Client, result.OriginalDestination, result.Reason, result.BytesClientToUpstream, result.BytesUpstreamToClient,
                    result.ClientMaxSubflows, result.UpstreamMaxSubflows, result.ClientMptcp.Status, result.UpstreamMptcp.Status,
                    Diagnostics.ProxyEventText.Connect(result.ConnectStatus.ToString(), result.ConnectTime?.TotalMilliseconds), result.Duration.TotalMilliseconds);
            }

            if (_events.Enabled)
            {
                _events.Relay(result);
            }

            _telemetry.Relayed(trace, result);
            if (result.ConnectStatus is UpstreamConnectStatus.Refused or UpstreamConnectStatus.TimedOut or UpstreamConnectStatus.Unreachable
                or UpstreamConnectStatus.CircuitOpen or UpstreamConnectStatus.Failed
                && _negotiator.OnUpstreamFailed(DestinationKey.From(endPoints.Destination)) && MayWarn())
            {
                ProxyEngineLog.CacheEntryRemoved(_log, endPoints.Destination, result.ConnectStatus);
            }
        }
        finally
        {
            if (registered)
            {
                _negotiator.Tokens.Unregister(token);
                _kernelSigning?.JoinTokenEnded(token);
            }

            // The flow's one teardown: its slot is released here and nowhere else.
            flow.Shutdown(FlowCloseReasons.Relayed);
        }
    }

    private async Task DrainAsync(Socket socket)
    {
        var buffer = new byte[256];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5), _time);
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            CloseAbortively(socket);
        }
    }
}
