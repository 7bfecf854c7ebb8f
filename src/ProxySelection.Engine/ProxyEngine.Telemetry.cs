using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>The relay's start, with the upstream connect as a span of the connection's trace when one is recorded.</summary>
public sealed partial class ProxyEngine
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
    /// a <c>proxysel.upstream_connect</c> span of the connection's trace, through the relay's connect hook. With
    /// <paramref name="upstreamSignal"/>, the egress hook signs the leg's SYN while it connects (spec §7.3.3).
    /// </summary>
    private Task<RelayResult> ConnectAndRelayAsync(Socket client, ConnectionTrace? trace, ProxySignal? upstreamSignal)
    {
        bool traced = trace is not null && trace.Root.Recorded;
        if (!traced && upstreamSignal is null)
        {
            return _relay.HandleAsync(client);
        }

        return _relay.HandleAsync(client, (upstream, protocol) =>
        {
            if (upstreamSignal is { } signal)
            {
                _signer.ExpectUpstreamSyn(upstream, signal);
            }

            var connected = traced ? TraceConnect(trace!, upstream, protocol) : null;
            return connect =>
            {
                if (upstreamSignal is not null)
                {
                    _signer.ForgetUpstreamSyn(upstream);
                }

                connected?.Invoke(connect);
            };
        });
    }

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
