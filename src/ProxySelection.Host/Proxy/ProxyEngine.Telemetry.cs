using System.Diagnostics;
using System.Net.Sockets;
using ProxySelection.Host.Telemetry;
using ProxySelection.Relay;

namespace ProxySelection.Host.Proxy;

/// <summary>The relay's start, with the upstream connect as a span of the connection's trace when one is recorded.</summary>
internal sealed partial class ProxyEngine
{
    private Task<RelayResult> RelayAdoptedAsync(Socket client, Socket probe, ConnectionTrace? trace)
    {
        if (trace is not null)
        {
            // The probe connection is the upstream leg: its span (proxysel.probe) was the connect.
            _telemetry.UpstreamConnected(trace, probe);
        }

        return _relay.RelayAsync(client, probe);
    }

    /// <summary>
    /// Untraced: the relay's own connect-and-relay. Traced: the same steps (a limiter slot, the relay's connector, then
    /// <see cref="RelayServer.RelayAsync"/>) with the connect inside a <c>proxysel.upstream_connect</c> span.
    /// </summary>
    private async Task<RelayResult> ConnectAndRelayAsync(Socket client, FlowEndPoints flow, ConnectionTrace? trace)
    {
        if (trace is null || !trace.Root.Recorded)
        {
            return await _relay.HandleAsync(client).ConfigureAwait(false);
        }

        if (!_relay.Limiter.TryAcquire())
        {
            CloseAbortively(client);
            return new RelayResult { Client = flow.Client, OriginalDestination = flow.Destination, Reason = CloseReason.Refused };
        }

        try
        {
            var upstreamProtocol = ClientProtocol == TransportProtocol.Mptcp ? TransportProtocol.Tcp : TransportProtocol.Mptcp;
            UpstreamConnectResult connect;
            using (var span = trace.StartUpstreamConnect(flow.Destination, upstreamProtocol))
            {
                connect = await _connector.ConnectAsync(flow.Destination, upstreamProtocol, null, _stopping.Token).ConfigureAwait(false);
                span?.SetTag("proxysel.upstream.connect_status", connect.Status.ToString());
                if (!connect.Connected)
                {
                    span?.SetStatus(ActivityStatusCode.Error, connect.Error.ToString());
                }
            }

            if (!connect.Connected)
            {
                // Reset, not FIN, as the relay does: the client must not take a closed port for an empty answer.
                CloseAbortively(client);
                return new RelayResult
                {
                    Client = flow.Client,
                    OriginalDestination = flow.Destination,
                    Upstream = flow.Destination,
                    Reason = connect.Status == UpstreamConnectStatus.Cancelled ? CloseReason.Aborted : CloseReason.UpstreamConnectFailed,
                    ConnectStatus = connect.Status,
                    Error = connect.Error,
                };
            }

            _telemetry.UpstreamConnected(trace, connect.Socket!);
            return await _relay.RelayAsync(client, connect.Socket!).ConfigureAwait(false);
        }
        finally
        {
            _relay.Limiter.Release();
        }
    }
}
