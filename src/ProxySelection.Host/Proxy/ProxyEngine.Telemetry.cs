using System.Diagnostics;
using System.Net;
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
    /// The relay's own connect-and-relay (limit, stopping check, upstream mapping, connect, relay); traced, the connect is
    /// a <c>proxysel.upstream_connect</c> span of the connection's trace, through the relay's connect hook.
    /// </summary>
    private Task<RelayResult> ConnectAndRelayAsync(Socket client, ConnectionTrace? trace) =>
        trace is null || !trace.Root.Recorded
            ? _relay.HandleAsync(client)
            : _relay.HandleAsync(client, (upstream, protocol) => TraceConnect(trace, upstream, protocol));

    private Action<UpstreamConnectResult> TraceConnect(ConnectionTrace trace, IPEndPoint upstream, TransportProtocol protocol)
    {
        // Started on the relay's async flow: the span is current for the connect only, and never leaks to the caller.
        var span = trace.StartUpstreamConnect(upstream, protocol);
        return connect =>
        {
            span?.SetTag("proxysel.upstream.connect_status", connect.Status.ToString());
            if (!connect.Connected)
            {
                span?.SetStatus(ActivityStatusCode.Error, connect.Error.ToString());
            }

            span?.Dispose();
            if (connect.Connected)
            {
                _telemetry.UpstreamConnected(trace, connect.Socket!);
            }
        };
    }
}
