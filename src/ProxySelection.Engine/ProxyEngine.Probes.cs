using System.Net;
using System.Net.Sockets;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Flows;
using ProxySelection.Engine.Hook;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>Probes: sending ours, reading their answers, answering other proxies' probes.</summary>
public sealed partial class ProxyEngine
{
    private readonly ConcurrentDictionary<long, OutstandingProbe> _probes = new();
    private readonly ConcurrentDictionary<(ushort LocalPort, IPEndPoint Server), OutstandingProbe> _probeBySource = new();

    /// <summary>
    /// Answers another proxy's probe for this proxy (design §4.1, spec §7.4: the policy selected it over the prober): the
    /// probe SYN goes to the local listener with its MP_CAPABLE taken out, so the SYN/ACK carries no MP_CAPABLE, and the
    /// egress hook adds the negotiator's answer (Defer). The prober reads "a proxy further on holds this destination",
    /// releases its client's SYN untouched and resets the probe; this proxy then intercepts that SYN when it arrives.
    /// </summary>
    private void AnswerProbe(InterceptedFlow flow, ReadOnlySpan<byte> syn, uint packetId, uint mark, ProxySignal? claim)
    {
        var buffer = syn.ToArray();
        int length = buffer.Length;
        if (TcpPacket.TryParse(buffer, out var parsed) == WireError.None)
        {
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

        if (!flow.TryAnswerProbe(claim))
        {
            Counters.AddPassed();
            Verdicts.Accept(packetId);
            return;
        }

        try
        {
            _ensureListener(new ListenerKey(flow.EndPoints.Destination.Port, flow.EndPoints.Destination.AddressFamily, ClientProtocol));
            var intercept = NfqueueClient.MaskedMark(mark, _rulesetOptions.InterceptMark, _rulesetOptions.InterceptMask);
            if (_rulesetOptions.KernelSigned)
            {
                // The listener's SYN/ACK would carry the kernel's Claim: the re-sign mark sends it to the egress hook for the Defer.
                intercept = NfqueueClient.MaskedMark(intercept, _rulesetOptions.ResignMark, _rulesetOptions.ResignMask);
            }

            Verdicts.AcceptWithPayload(packetId, buffer.AsSpan(0, length), intercept);
        }
        catch
        {
            flow.Shutdown(FlowCloseReasons.VerdictFailed);
            throw;
        }

        Counters.AddProbeAnswerSent();
        if (_log.IsEnabled(LogLevel.Debug))
        {
            ProxyEngineLog.ProbeAnswerSent(_log, flow.EndPoints.Client, flow.EndPoints.Destination, claim?.Kind.ToString() ?? "");
        }
    }

    /// <summary>
    /// The global probe cap began passing SYNs unprobed (spec §11.3): one line per episode, through the warning budget; the
    /// negotiator counts every such SYN (<c>probes_rate_limited</c>, <c>probes_rate_capped</c>).
    /// </summary>
    private void ProbeRateCapReached()
    {
        if (MayWarn())
        {
            ProbeRateCapLog(_log, _options.Negotiation.ProbeRateGlobal);
        }
    }

    [LoggerMessage(124, LogLevel.Warning, "probe rate cap reached ({PerSecond} a second, Proxy:ProbeRateGlobal): SYNs beyond it pass untouched, unprobed, until probes fall below it")]
    private static partial void ProbeRateCapLog(ILogger logger, double perSecond);

    private void StartProbe(long probeId, IPEndPoint destination, ProxySignal? signal)
    {
        Counters.AddProbeStarted();
        IProbeSocket socket;
        try
        {
            socket = _probeConnector.Open(destination);
        }
        catch (SocketException e)
        {
            if (MayWarn())
            {
                ProxyEngineLog.ProbeSocketFailed(_log, probeId, destination, e.SocketErrorCode);
            }
            ProbeFailed(probeId, destination);
            return;
        }

        var probe = new OutstandingProbe(probeId, destination, socket);
        _probes[probeId] = probe;
        _probeBySource[(socket.LocalPort, destination)] = probe;
        if (signal is { } s)
        {
            _signer.ExpectSyn(socket.LocalPort, destination, s);
        }

        _ = RunProbeAsync(probe, signal is not null);
    }

    private async Task RunProbeAsync(OutstandingProbe probe, bool signed)
    {
        bool answered = false;
        try
        {
            await probe.Socket.ConnectAsync(probe.Destination, _stopping.Token).ConfigureAwait(false);
            answered = true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // Refused, unreachable, or closed by the timeout's resolution (then the reset below is a no-op).
        }
        finally
        {
            if (signed)
            {
                _signer.ForgetSyn(probe.Socket.LocalPort, probe.Destination);
            }

            _probeBySource.TryRemove(new KeyValuePair<(ushort, IPEndPoint), OutstandingProbe>((probe.Socket.LocalPort, probe.Destination), probe));
        }

        if (!answered)
        {
            if (_probes.ContainsKey(probe.Id))
            {
                ProbeFailed(probe.Id, probe.Destination);
            }
            else
            {
                // Resolved already (timed out: its event is out); the abort of its socket ended the connect.
                Counters.AddProbeFailed();
                _telemetry.ProbeEnded(probe.Id, answered: false, mpCapable: false, signal: null);
            }

            return;
        }

        if (!probe.TryTakeAnswer())
        {
            // Read at the deadline already (TryReadProbeAnswerAtDeadline): counted and decided there.
            return;
        }

        Counters.AddProbeAnswered();
        // The kernel's view (MPTCP_INFO) decides MP_CAPABLE; the ingress hook saw the SYN/ACK first and kept its claim (a
        // downgrading proxy queues only SYN/ACKs with an MPTCP option: an answer without one carries no claim anyway).
        bool mpCapable = probe.Socket.IsMptcp;
        var claim = probe.Claim;
        if (!_probes.ContainsKey(probe.Id))
        {
            // Answered just after its timeout resolved it: the timed_out event stands, the negotiator ignores this.
            _telemetry.ProbeEnded(probe.Id, answered: true, mpCapable, claim?.Kind.ToString());
            return;
        }

        ProbeEnded(probe.Id, probe.Destination, "answered", mpCapable, claim);
        _negotiator.OnProbeAnswered(probe.Id, new ProbeAnswer(mpCapable, claim));
    }

    /// <summary>
    /// The negotiator's deadline for <paramref name="probeId"/> passed. Under load the connect's completion can wait in the
    /// thread pool after the kernel has the answer (the server answered in microseconds, the daemon was busy): the socket
    /// is asked directly, and an established connection is the answer, whatever the timer says. That includes an answer
    /// the connect's completion took a moment ago and has not handed to the negotiator yet (it counts it; its hand-over then
    /// finds the probe decided): declaring that probe timed out released its SYN and left the server a phantom connection
    /// (issue 13's burst, 2 of 3 timeouts in 6 runs, answered 0.3-1.6 ms before the deadline's verdict).
    /// </summary>
    bool INegotiationSink.TryReadProbeAnswerAtDeadline(long probeId, out ProbeAnswer answer)
    {
        answer = default;
        if (!_probes.TryGetValue(probeId, out var probe) || !probe.Socket.IsEstablished)
        {
            return false;
        }

        bool mpCapable = probe.Socket.IsMptcp;
        var claim = probe.Claim;
        if (probe.TryTakeAnswer())
        {
            Counters.AddProbeAnswered();
            Counters.AddProbeAnsweredAtDeadline();
            ProbeEnded(probe.Id, probe.Destination, "answered", mpCapable, claim);
        }
        else if (_events.Enabled)
        {
            // The completion counts it, but finds the probe decided and writes no event: the decision's event is here.
            _events.Probe(probe.Id, probe.Destination, "answered", mpCapable, claim);
        }

        answer = new ProbeAnswer(mpCapable, claim);
        return true;
    }

    private void ProbeFailed(long probeId, IPEndPoint destination)
    {
        Counters.AddProbeFailed();
        ProbeEnded(probeId, destination, "failed", mpCapable: false, claim: null);
        _negotiator.OnProbeReset(probeId);
    }

    private void ProbeEnded(long probeId, IPEndPoint destination, string outcome, bool mpCapable, ProxySignal? claim)
    {
        _telemetry.ProbeEnded(probeId, outcome == "answered", mpCapable, claim?.Kind.ToString());
        if (_log.IsEnabled(LogLevel.Debug))
        {
            ProxyEngineLog.ProbeEnded(_log, probeId, destination, outcome, mpCapable, claim?.Kind.ToString());
        }

        if (_events.Enabled)
        {
            _events.Probe(probeId, destination, outcome, mpCapable, claim);
        }
    }

    /// <summary>A probe ended (answered, timed out, reset): verdicts for the SYNs that waited on it.</summary>
    public void OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds)
    {
        _probes.TryRemove(probeId, out var probe);
        if (probe is not null && holds.Length > 0 && holds[0].Reason == DecisionReason.ProbeTimedOut && _events.Enabled)
        {
            _events.Probe(probeId, probe.Destination, "timed_out", mpCapable: false, signal: null);
        }

        bool handedOver = false;
        foreach (var resolution in holds)
        {
            InterceptedFlow? flow;
            lock (_holdLock)
            {
                flow = _flows.TakeHeld(resolution.HoldId);
            }

            if (flow?.Held is not { } held)
            {
                continue;
            }

            HoldEnded(flow, held, resolution);
            try
            {
                if (resolution.Outcome == HoldOutcome.Intercept)
                {
                    var upstream = resolution.UpstreamIsProbe && probe is { Socket.Socket: not null } && !handedOver
                        && _flows.AwaitingAcceptCount < _options.MaxAdoptedProbes ? probe.Socket : null;
                    handedOver |= upstream is not null;
                    Intercept(flow, held.PacketId, held.Mark, resolution.Reason, resolution.SynAckSignal, upstream, resolution.UpstreamSignal);
                }
                else if (resolution.Outcome == HoldOutcome.AnswerProbe && held.Syn is not null)
                {
                    AnswerProbe(flow, held.Syn, held.PacketId, held.Mark, resolution.SynAckSignal);
                }
                else
                {
                    flow.Shutdown(FlowCloseReasons.Released);
                    Counters.AddReleased();
                    Verdicts.Accept(held.PacketId);
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                flow.Shutdown(FlowCloseReasons.VerdictFailed);
                Counters.AddHookFailure();
                if (MayWarn())
                {
                    ProxyEngineLog.VerdictFailed(_log, e.GetType().Name, e.Message);
                }
                TryAccept(held.PacketId);
            }
        }

        if (probe is not null && !handedOver)
        {
            probe.Socket.Abort();
        }
    }

    /// <summary>A held SYN's hold ended (its verdict follows): the hold time, the log line, the event and the trace.</summary>
    private void HoldEnded(InterceptedFlow flow, HeldPacket held, in HoldResolution resolution)
    {
        var holdTime = _time.GetElapsedTime(held.HeldAt);
        Counters.RecordHold(holdTime);
        if (_log.IsEnabled(LogLevel.Debug))
        {
            ProxyEngineLog.HoldResolved(_log, flow.EndPoints.Client, flow.EndPoints.Destination, resolution.Outcome, resolution.Reason, holdTime.TotalMilliseconds);
        }

        if (_events.Enabled)
        {
            _events.Hold(flow.EndPoints, resolution.Outcome, resolution.Reason, holdTime);
        }

        _telemetry.HoldResolved(flow.EndPoints, resolution);
    }

    /// <summary>
    /// A SYN/ACK from an intercepted port (always accepted untouched): the answer to one of our probes is kept for the
    /// probe (its claim; the first SYN/ACK decides, later ones are ignored); any other is what a prober further back learns.
    /// </summary>
    private void OnSynAck(in TcpPacket parsed)
    {
        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        bool mpCapable = SynOptions.IsMpCapable(tcp.Options);
        var mpFlow = MpProxyFlow.ForSyn(ip.DestinationAddress, ip.SourceAddress, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1)
            .WithSynAck(tcp.SequenceNumber);
        var signal = SignalCodec.Read(tcp.Options, _options.KeyRing, mpFlow, out _);
        var server = new IPEndPoint(new IPAddress(ip.SourceAddress), tcp.SourcePort);
        if (_probeBySource.TryGetValue((tcp.DestinationPort, server), out var probe))
        {
            probe.OnSynAck(signal, tcp.AcknowledgmentNumber);
            return;
        }

        var flow = FlowKey.FromSynAck(new DestinationKey(ip.SourceAddress, tcp.SourcePort), new DestinationKey(ip.DestinationAddress, tcp.DestinationPort));
        _negotiator.OnSynAckObserved(new SynAckObservation(flow, tcp.AcknowledgmentNumber, mpCapable, signal));
    }

    private void CloseProbes()
    {
        foreach (var probe in _probes.Values)
        {
            probe.Socket.Abort();
        }
    }

    /// <summary>
    /// The probe's own SYN on its way out (egress hook): its ISN, so that only a SYN/ACK acknowledging it can be the probe's
    /// answer (a forged or stray SYN/ACK arriving first must not take the first-SYN/ACK-decides slot).
    /// </summary>
    private void OnOwnSyn(in TcpPacket parsed)
    {
        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        if ((tcp.Flags & (TcpFlags.Syn | TcpFlags.Ack)) != TcpFlags.Syn || _probeBySource.IsEmpty)
        {
            return;
        }

        var server = new IPEndPoint(new IPAddress(ip.DestinationAddress), tcp.DestinationPort);
        if (_probeBySource.TryGetValue((tcp.SourcePort, server), out var probe))
        {
            probe.OnOwnSyn(tcp.SequenceNumber);
        }
    }

    /// <summary>One probe out: its socket, and what the ingress hook saw of its SYN/ACK (written on the hook thread, read after the connect).</summary>
    private sealed class OutstandingProbe(long id, IPEndPoint destination, IProbeSocket socket)
    {
        private ProxySignal? _claim;
        private int _seen;
        private int _answerTaken;
        private long _isn = -1;

        public long Id => id;

        public IPEndPoint Destination => destination;

        public IProbeSocket Socket => socket;

        public ProxySignal? Claim => Volatile.Read(ref _seen) == 2 ? _claim : null;

        /// <summary>True once: the connect's completion and the deadline's read of the socket race; the first counts the answer.</summary>
        public bool TryTakeAnswer() => Interlocked.Exchange(ref _answerTaken, 1) == 0;

        public void OnOwnSyn(uint isn) => Interlocked.Exchange(ref _isn, isn);

        /// <summary>
        /// The first SYN/ACK that acknowledges the probe's ISN + 1 decides (spec): a later one (a retransmission, a second
        /// answer) is ignored, and so is one acknowledging something else. Without the ISN (the SYN was not seen) any counts.
        /// </summary>
        public void OnSynAck(ProxySignal? signal, uint acknowledgment)
        {
            long isn = Interlocked.Read(ref _isn);
            if (isn >= 0 && acknowledgment != unchecked((uint)isn + 1))
            {
                return;
            }

            if (Interlocked.CompareExchange(ref _seen, 1, 0) != 0)
            {
                return;
            }

            _claim = signal;
            Volatile.Write(ref _seen, 2);
        }
    }
}
