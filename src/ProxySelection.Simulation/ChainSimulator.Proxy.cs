using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Negotiation.Simulation;

public sealed partial class ChainSimulator
{
    /// <summary>A proxy: the packet hook around a real <see cref="ProxyNegotiator"/>.</summary>
    private sealed class ProxyNode : Node, INegotiationSink
    {
        private readonly MpProxyKeyRing _keys;
        private readonly Dictionary<long, Packet> _held = [];
        private readonly Dictionary<Flow, long> _holdByFlow = [];
        private readonly Dictionary<long, Flow> _probes = [];
        private readonly Dictionary<Flow, long> _probeByFlow = [];
        private readonly HashSet<Flow> _ownLegs = [];
        private readonly HashSet<Flow> _intercepted = [];
        private readonly int _preloaded;

        public ProxyNode(ChainSimulator sim, int index, ProxyHop spec) : base(sim, index)
        {
            Spec = spec;
            _keys = spec.ForeignKey ? sim._foreignKeys : sim._domainKeys;
            var options = new NegotiatorOptions
            {
                ProxyId = spec.ProxyId,
                Priority = spec.Priority,
                Role = spec.Role,
                Policy = spec.Policy,
                Mode = spec.Mode,
                MaxConnections = spec.AtCapacity ? 1 : 1000,
                ProbeTimeout = sim._spec.ProbeTimeout,
                // One destination per chain: a small table keeps thousands of simulated chains cheap.
                Cache = new CapabilityCacheOptions { MaxEntries = 16 },
            };
            Negotiator = new ProxyNegotiator(options, sim._time, this);
            if (spec.AtCapacity)
            {
                // Another connection already fills the only slot.
                Negotiator.TryAdmit();
                _preloaded = 1;
            }
        }

        public ProxyHop Spec { get; }

        public ProxyNegotiator Negotiator { get; }

        public override void Receive(Packet packet)
        {
            switch (packet.Type, packet.TowardServer)
            {
                case (PacketType.Syn, true):
                    OnSyn(packet);
                    break;
                case (PacketType.SynAck, false):
                    OnSynAck(packet);
                    break;
                case (PacketType.Rst, true):
                    OnResetTowardServer(packet);
                    break;
                case (PacketType.Rst, false):
                    OnResetTowardClient(packet);
                    break;
                default:
                    Forward(packet);
                    break;
            }
        }

        /// <summary>After the connection closed: nothing held, nothing probing, no slot or token left behind.</summary>
        public void CheckQuiet(List<string> violations)
        {
            if (Negotiator.HeldSyns != 0 || _held.Count != 0)
            {
                violations.Add($"P{Spec.ProxyId} still holds {Negotiator.HeldSyns} SYN(s)");
            }

            if (Negotiator.ProbesInFlight != 0)
            {
                violations.Add($"P{Spec.ProxyId} still has {Negotiator.ProbesInFlight} probe(s) out");
            }

            if (Negotiator.ActiveConnections != _preloaded + _intercepted.Count)
            {
                violations.Add($"P{Spec.ProxyId} counts {Negotiator.ActiveConnections} connections, holds {_intercepted.Count}");
            }

            if (_intercepted.Count != 0 || Negotiator.Tokens.Count != 0)
            {
                violations.Add($"P{Spec.ProxyId} still holds {_intercepted.Count} connection(s), {Negotiator.Tokens.Count} token(s)");
            }
        }

        /// <summary>Closes a connection this proxy terminated, and its upstream leg.</summary>
        public void CloseIntercepted(Flow flow, bool sendReset)
        {
            if (!_intercepted.Remove(flow))
            {
                return;
            }

            Negotiator.OnConnectionClosed();
            Negotiator.Tokens.Unregister(TokenOf(flow));
            if (flow.Upstream is { } leg)
            {
                _ownLegs.Remove(leg);
                leg.Closed = true;
                if (sendReset)
                {
                    Send(new Packet(leg, PacketType.Rst, towardServer: true, mpCapable: false, []));
                }
            }
        }

        public void OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds)
        {
            _probes.Remove(probeId, out var probe);
            foreach (var resolution in holds)
            {
                if (!_held.Remove(resolution.HoldId, out var syn))
                {
                    continue;
                }

                _holdByFlow.Remove(syn.Flow);
                switch (resolution.Outcome)
                {
                    case HoldOutcome.Release:
                        Forward(syn);
                        break;
                    case HoldOutcome.Intercept:
                        Intercept(syn, resolution.SynAckSignal, resolution.Upstream, resolution.UpstreamSignal, resolution.UpstreamIsProbe ? probe : null);
                        break;
                    case HoldOutcome.AnswerProbe:
                        syn.Flow.Touches.Add(Index);
                        AnswerSyn(syn, mpCapable: false, resolution.SynAckSignal, _keys);
                        break;
                }
            }

            if (probe is not null && !probeAdopted)
            {
                _probeByFlow.Remove(probe);
                probe.Closed = true;
                Send(new Packet(probe, PacketType.Rst, towardServer: true, mpCapable: false, []));
            }
        }

        private ProxySignal? Read(Packet packet, bool synAck) =>
            SignalCodec.Read(packet.Options, SegmentOf(packet), _keys, SignatureFlow(packet.Flow, synAck), out _);

        private void Forward(Packet packet)
        {
            packet.Flow.Forwards.Add((Index, packet.Options, packet.Options));
            Send(packet);
        }

        private void OnSyn(Packet packet)
        {
            var flow = packet.Flow;
            var kind = flow.IsJoin ? SynKind.MpJoin : packet.MpCapable ? SynKind.MpCapable : SynKind.Tcp;
            // Every SYN toward the server arrives on the proxy's one client-side link.
            var observation = new SynObservation(KeyOf(flow), kind, Read(packet, synAck: false), flow.JoinToken)
            {
                Isn = flow.SynIsn,
                IngressInterface = ClientSideInterface,
            };
            var decision = Negotiator.OnSyn(observation);
            switch (decision.Verdict)
            {
                case SynVerdict.Pass:
                case SynVerdict.Defer:
                    Forward(packet);
                    break;
                case SynVerdict.HoldAndProbe:
                    Sim._window.ContextHolders.Add(Index);
                    _held.Add(decision.HoldId, packet);
                    _holdByFlow[flow] = decision.HoldId;
                    if (decision.StartProbe)
                    {
                        StartProbe(decision);
                    }

                    break;
                case SynVerdict.Intercept:
                    Intercept(packet, decision.SynAckSignal, decision.Upstream, decision.UpstreamSignal, adoptedProbe: null);
                    break;
                case SynVerdict.AnswerProbe:
                    flow.Touches.Add(Index);
                    AnswerSyn(packet, mpCapable: false, decision.SynAckSignal, _keys);
                    break;
                case SynVerdict.InterceptJoin:
                    AnswerSyn(packet, mpCapable: false, null, _keys);
                    break;
                case SynVerdict.Duplicate:
                    break;
            }
        }

        private void StartProbe(in SynDecision decision)
        {
            var probe = Sim.NewFlow(Index, isProbe: true);
            _probes.Add(decision.ProbeId, probe);
            _probeByFlow.Add(probe, decision.ProbeId);
            Sim._window.OpenedByProxies.Add(probe);
            Sim._window.Probes++;
            var options = Encode(decision.ProbeSignal, _keys, SignatureFlow(probe, synAck: false));
            Send(new Packet(probe, PacketType.Syn, towardServer: true, mpCapable: true, options));
            // A tick at the deadline so the fake clock stops exactly there and the negotiator's timer fires on time.
            Sim.Schedule(decision.ProbeTimeout, static () => { });
        }

        private void Intercept(Packet syn, ProxySignal? claim, UpstreamLeg upstream, ProxySignal? upstreamSignal, Flow? adoptedProbe)
        {
            Sim._window.ContextHolders.Add(Index);
            var flow = syn.Flow;
            _intercepted.Add(flow);
            // The engine takes the slot when the listener accepts; the simulated handshake completes at once.
            Negotiator.TryAdmit();
            // The client leg keeps the kind of the SYN: MPTCP for a downgrade, TCP for an upgrade.
            bool mptcp = syn.MpCapable;
            if (mptcp)
            {
                Negotiator.Tokens.Register(TokenOf(flow));
            }

            AnswerSyn(syn, mptcp, claim, _keys);
            if (adoptedProbe is not null)
            {
                _probeByFlow.Remove(adoptedProbe);
                _ownLegs.Add(adoptedProbe);
                flow.Upstream = adoptedProbe;
                return;
            }

            var leg = Sim.NewFlow(Index, isProbe: false);
            Sim._window.OpenedByProxies.Add(leg);
            _ownLegs.Add(leg);
            flow.Upstream = leg;
            var options = Encode(upstreamSignal, _keys, SignatureFlow(leg, synAck: false));
            Send(new Packet(leg, PacketType.Syn, towardServer: true, mpCapable: upstream == UpstreamLeg.Mptcp, options));
        }

        private void OnSynAck(Packet packet)
        {
            var flow = packet.Flow;
            if (flow.Origin != Index)
            {
                Negotiator.OnSynAckObserved(new SynAckObservation(KeyOf(flow), AckOf(packet), packet.MpCapable, Read(packet, synAck: true)));
                Forward(packet);
                return;
            }

            if (flow.Closed || flow.Established)
            {
                return;
            }

            flow.Established = true;
            flow.MptcpAnswered = packet.MpCapable;
            if (_probeByFlow.TryGetValue(flow, out long probeId))
            {
                Negotiator.OnProbeAnswered(probeId, new ProbeAnswer(packet.MpCapable, Read(packet, synAck: true)));
            }
        }

        private void OnResetTowardServer(Packet packet)
        {
            var flow = packet.Flow;
            if (_holdByFlow.Remove(flow, out long holdId))
            {
                // The sender gave up on a SYN held here: drop it, nothing went further.
                Negotiator.OnHeldSynReset(holdId);
                _held.Remove(holdId);
                return;
            }

            if (_intercepted.Contains(flow))
            {
                CloseIntercepted(flow, sendReset: true);
                return;
            }

            Send(packet);
        }

        private void OnResetTowardClient(Packet packet)
        {
            var flow = packet.Flow;
            if (flow.Origin != Index)
            {
                Send(packet);
                return;
            }

            flow.TerminatedBy = flow.TerminatedBy < 0 ? -1 : flow.TerminatedBy;
            if (_probeByFlow.TryGetValue(flow, out long probeId))
            {
                Negotiator.OnProbeReset(probeId);
            }
        }
    }
}
