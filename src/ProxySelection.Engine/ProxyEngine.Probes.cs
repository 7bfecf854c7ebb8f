using System.Net;
using System.Net.Sockets;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>Probes: sending ours, reading their answers, answering other proxies' probes.</summary>
public sealed partial class ProxyEngine
{
    /// <summary>
    /// Answers another proxy's probe for this proxy (design §4.1, spec §7.4: the policy selected it over the prober): the
    /// probe SYN goes to the local listener with its MP_CAPABLE taken out, so the SYN/ACK carries no MP_CAPABLE, and the
    /// egress hook adds the negotiator's answer (Defer). The prober reads "a proxy further on holds this destination",
    /// releases its client's SYN untouched and resets the probe; this proxy then intercepts that SYN when it arrives.
    /// </summary>
    private void AnswerProbe(ReadOnlySpan<byte> syn, uint packetId, uint mark, FlowEndPoints flow, ProxySignal? claim)
    {
        var buffer = syn.ToArray();
        int length = buffer.Length;
        if (TcpPacket.TryParse(buffer, out var parsed) == WireError.None)
        {
            int optionsOffset = parsed.OptionsOffset;
            var options = parsed.Tcp.Options;
            int capable = -1;
            foreach (var option in new TcpOptionReader(options))
            {
                if (option.Kind == TcpOptionKind.Mptcp && MptcpOption.TryPeekSubtype(option.Slice(options), out var subtype) == WireError.None
                    && subtype == MptcpSubtype.MpCapable)
                {
                    capable = option.Offset;
                    break;
                }
            }

            if (capable >= 0 && OptionRewriter.TryRemove(buffer, length, capable, out int stripped, ChecksumUpdate.Recompute) == WireError.None)
            {
                length = stripped;
            }
        }

        if (claim is { } signal)
        {
            _signer.ExpectSynAck(flow, signal);
        }

        _answeredProbes[flow] = 0;
        try
        {
            _listeners.Ensure(new ListenerKey(flow.Destination.Port, flow.Destination.AddressFamily, ClientProtocol));
            var intercept = NfqueueClient.MaskedMark(mark, _rulesetOptions.InterceptMark, _rulesetOptions.InterceptMask);
            _queue!.AcceptWithPayload(packetId, buffer.AsSpan(0, length), intercept);
        }
        catch
        {
            _signer.ForgetClaim(flow);
            _answeredProbes.TryRemove(flow, out _);
            throw;
        }

        Counters.AddProbeAnswerSent();
        ProxyEngineLog.ProbeAnswerSent(_log, flow.Client, flow.Destination, claim?.Kind.ToString() ?? "");
        _ = ForgetAnsweredProbeAsync(flow);
    }

    private async Task ForgetAnsweredProbeAsync(FlowEndPoints flow)
    {
        try
        {
            await Task.Delay(_options.AdoptionTimeout, _time, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        _signer.ForgetClaim(flow);
        _answeredProbes.TryRemove(flow, out _);
    }

    private void StartProbe(long probeId, IPEndPoint destination, ProxySignal? signal)
    {
        Counters.AddProbeStarted();
        Socket socket;
        ushort localPort;
        try
        {
            socket = _markedSockets.Create(destination.AddressFamily, TransportProtocol.Mptcp);
            socket.NoDelay = true;
            // Bound first so the egress hook can tell this probe's SYN by its source port.
            socket.Bind(new IPEndPoint(destination.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0));
            localPort = (ushort)((IPEndPoint)socket.LocalEndPoint!).Port;
        }
        catch (SocketException e)
        {
            ProxyEngineLog.ProbeSocketFailed(_log, probeId, destination, e.SocketErrorCode);
            Counters.AddProbeFailed();
            _telemetry.ProbeEnded(probeId, answered: false, mpCapable: false, signal: null);
            _negotiator.OnProbeReset(probeId);
            return;
        }

        _probes[probeId] = socket;
        _probeAnswers[(localPort, destination)] = new ProbeAnswerSlot();
        if (signal is { } s)
        {
            _signer.ExpectSyn(localPort, destination, s);
        }

        _ = RunProbeAsync(probeId, socket, localPort, destination);
    }

    private async Task RunProbeAsync(long probeId, Socket socket, ushort localPort, IPEndPoint destination)
    {
        bool answered = false;
        try
        {
            await socket.ConnectAsync(destination, _stopping.Token).ConfigureAwait(false);
            answered = true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // Refused, unreachable, or closed by the timeout's resolution (then the reset below is a no-op).
        }
        finally
        {
            _signer.ForgetSyn(localPort, destination);
        }

        _probeAnswers.TryRemove((localPort, destination), out var seen);

        if (!answered)
        {
            Counters.AddProbeFailed();
            _telemetry.ProbeEnded(probeId, answered: false, mpCapable: false, signal: null);
            _negotiator.OnProbeReset(probeId);
            return;
        }

        Counters.AddProbeAnswered();
        // The kernel's view (MPTCP_INFO) decides MP_CAPABLE; the ingress hook saw the SYN/ACK first and kept its claim (a
        // downgrading proxy queues only SYN/ACKs with an MPTCP option: an answer without one carries no claim anyway).
        bool mpCapable = MptcpSocket.TryGetInfo(socket, out _) == MptcpStatus.Active;
        var claim = seen is { Seen: true } ? seen.Signal : null;
        ProxyEngineLog.ProbeAnswered(_log, probeId, destination, mpCapable, claim is { } c ? $" signal={c.Kind} proxy={c.ProxyId}" : "");
        _telemetry.ProbeEnded(probeId, answered: true, mpCapable, claim?.Kind.ToString());
        _negotiator.OnProbeAnswered(probeId, new ProbeAnswer(mpCapable, claim));
    }

    /// <summary>A probe ended (answered, timed out, reset): verdicts for the SYNs that waited on it.</summary>
    public void OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds)
    {
        _probes.TryRemove(probeId, out var probe);
        bool handedOver = false;
        foreach (var resolution in holds)
        {
            HeldSyn? held;
            lock (_holdLock)
            {
                _holds.Remove(resolution.HoldId, out held);
            }

            if (held is null)
            {
                continue;
            }

            var holdTime = _time.GetElapsedTime(held.HeldAt);
            Counters.RecordHold(holdTime);
            ProxyEngineLog.HoldResolved(_log, held.Flow.Client, held.Flow.Destination, resolution.Outcome, resolution.Reason, holdTime.TotalMilliseconds);
            _telemetry.HoldResolved(held.Flow, resolution);
            try
            {
                if (resolution.Outcome == HoldOutcome.Intercept)
                {
                    var upstream = resolution.UpstreamIsProbe && probe is not null && !handedOver ? probe : null;
                    handedOver |= upstream is not null;
                    Intercept(held.PacketId, held.Mark, held.Flow, resolution.SynAckSignal, upstream, resolution.Reason, resolution.UpstreamSignal);
                }
                else if (resolution.Outcome == HoldOutcome.AnswerProbe && held.Syn is not null)
                {
                    AnswerProbe(held.Syn, held.PacketId, held.Mark, held.Flow, resolution.SynAckSignal);
                }
                else
                {
                    Counters.AddReleased();
                    _queue?.Accept(held.PacketId);
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Counters.AddHookFailure();
                ProxyEngineLog.VerdictFailed(_log, e.GetType().Name, e.Message);
                TryVerdict(held.PacketId, null);
            }
        }

        if (probe is not null && !handedOver)
        {
            CloseAbortively(probe);
        }
    }

    /// <summary>
    /// A SYN/ACK from an intercepted port (always accepted untouched): the answer to one of our probes is kept for the
    /// probe (its MP_CAPABLE and verified claim); any other is what a prober further back learns (design §4).
    /// </summary>
    private void OnSynAck(in TcpPacket parsed)
    {
        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        bool mpCapable = ReadMptcp(tcp.Options, out _) == SynKind.MpCapable;
        var mpFlow = MpProxyFlow.ForSyn(ip.DestinationAddress, ip.SourceAddress, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1)
            .WithSynAck(tcp.SequenceNumber);
        var signal = SignalCodec.Read(tcp.Options, _options.KeyRing, mpFlow, out _);
        var server = new IPEndPoint(new IPAddress(ip.SourceAddress), tcp.SourcePort);
        if (_probeAnswers.TryGetValue((tcp.DestinationPort, server), out var answer))
        {
            answer.Signal = signal;
            answer.Seen = true;
            return;
        }

        var flow = FlowKey.FromSynAck(new DestinationKey(ip.SourceAddress, tcp.SourcePort), new DestinationKey(ip.DestinationAddress, tcp.DestinationPort));
        _negotiator.OnSynAckObserved(new SynAckObservation(flow, tcp.AcknowledgmentNumber, mpCapable, signal));
    }

    /// <summary>What the ingress hook saw of a probe's SYN/ACK (written on the hook thread, read after the connect completed).</summary>
    private sealed class ProbeAnswerSlot
    {
        public volatile bool Seen;
        public ProxySignal? Signal;
    }
}
