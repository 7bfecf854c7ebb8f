using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Negotiation.Simulation;

public sealed partial class ChainSimulator
{
    private abstract class Node(ChainSimulator sim, int index)
    {
        public int Index { get; } = index;

        protected ChainSimulator Sim { get; } = sim;

        public abstract void Receive(Packet packet);

        /// <summary>Puts a packet on the link toward the server or the client.</summary>
        public void Send(Packet packet)
        {
            int next = packet.TowardServer ? Index + 1 : Index - 1;
            if (!packet.TowardServer)
            {
                // Asymmetric routing: the way back skips such proxies, except toward their own connections.
                while (next > 0 && packet.Flow.Origin != next && Sim._nodes[next] is ProxyNode { Spec.ReturnBypasses: true })
                {
                    next--;
                }
            }

            var target = Sim._nodes[next];
            Sim.Schedule(Sim._spec.LinkLatency, () => target.Receive(packet));
        }

        /// <summary>Answers a SYN that this node terminates.</summary>
        protected void AnswerSyn(Packet syn, bool mpCapable, ProxySignal? signal, MpProxyKeyRing ring)
        {
            var flow = syn.Flow;
            flow.TerminatedBy = Index;
            flow.SynAckIsn = (uint)Sim._random.NextInt64(1, uint.MaxValue);
            var options = Encode(signal, ring, SignatureFlow(flow, synAck: true));
            Send(new Packet(flow, PacketType.SynAck, towardServer: false, mpCapable, options));
        }
    }

    private sealed class ClientNode(ChainSimulator sim, int index) : Node(sim, index)
    {
        private Flow? _current;

        public TimeSpan? EstablishedAt { get; private set; }

        public bool SawClaim { get; private set; }

        public Flow Open(int index)
        {
            _ = index;
            EstablishedAt = null;
            SawClaim = false;
            _current = Sim.NewFlow(Index, isProbe: false);
            Send(new Packet(_current, PacketType.Syn, towardServer: true, Sim._spec.ClientMptcp, []));
            return _current;
        }

        public override void Receive(Packet packet)
        {
            if (packet.Type != PacketType.SynAck || packet.Flow.Origin != Index || packet.Flow.Established)
            {
                return;
            }

            var flow = packet.Flow;
            flow.Established = true;
            flow.MptcpAnswered = packet.MpCapable && Sim._spec.ClientMptcp;
            if (flow == _current)
            {
                EstablishedAt = Sim.Now;
                var signal = SignalCodec.Read(packet.Options, SegmentOf(packet), Sim._domainKeys, SignatureFlow(flow, synAck: true), out _);
                SawClaim = signal is { Kind: SignalKind.Claim };
            }
        }
    }

    private sealed class ServerNode(ChainSimulator sim, int index) : Node(sim, index)
    {
        private readonly HashSet<uint> _tokens = [];

        public override void Receive(Packet packet)
        {
            if (packet.Type != PacketType.Syn)
            {
                return;
            }

            var flow = packet.Flow;
            if (flow.IsJoin)
            {
                if (Sim._spec.ServerMptcp && _tokens.Contains(flow.JoinToken))
                {
                    AnswerSyn(packet, mpCapable: false, null, Sim._domainKeys);
                }
                else
                {
                    flow.TerminatedBy = Index;
                    Send(new Packet(flow, PacketType.Rst, towardServer: false, mpCapable: false, []));
                }

                return;
            }

            bool mptcp = Sim._spec.ServerMptcp && packet.MpCapable;
            if (mptcp)
            {
                _tokens.Add(TokenOf(flow));
            }

            AnswerSyn(packet, mptcp, null, Sim._domainKeys);
        }
    }

    private sealed class MiddleboxNode(ChainSimulator sim, int index, MiddleboxHop spec) : Node(sim, index)
    {
        private static readonly byte[] ForeignExperimentOption = [MpProxyOption.Kind, 6, 0xF2, 0x5A, 0xDE, 0xAD];

        private bool _lostProbe;
        private bool _lostAnswer;

        public override void Receive(Packet packet)
        {
            switch (spec.Behavior)
            {
                case MiddleboxBehavior.StripMpProxy:
                    Send(packet.Options.Length == 0 ? packet : packet.With(packet.MpCapable, []));
                    return;
                case MiddleboxBehavior.StripMptcp:
                    // Joins are MPTCP too; a stretch crossing this box never negotiated MPTCP, so none is sent across it.
                    Send(packet.With(mpCapable: false, []));
                    return;
                case MiddleboxBehavior.LoseFirstProbe when !_lostProbe && packet.Type == PacketType.Syn && packet.Flow.IsProbe:
                    _lostProbe = true;
                    return;
                case MiddleboxBehavior.LoseFirstProbeAnswer when !_lostAnswer && packet.Type == PacketType.SynAck && packet.Flow.IsProbe:
                    _lostAnswer = true;
                    return;
                case MiddleboxBehavior.LoseFirstProbe:
                case MiddleboxBehavior.LoseFirstProbeAnswer:
                case MiddleboxBehavior.Forward:
                    Send(packet);
                    return;
                case MiddleboxBehavior.AddForeignExperiment:
                    Send(packet.Type == PacketType.Rst ? packet : packet.With(packet.MpCapable, [.. packet.Options, .. ForeignExperimentOption]));
                    return;
                default:
                    Send(packet.Type == PacketType.Rst ? packet : packet.With(packet.MpCapable, Forge(packet)));
                    return;
            }
        }

        /// <summary>The most harmful message for the segment, were it believed: a Claim on a SYN stops every proxy, a Defer on a SYN/ACK makes a prober release.</summary>
        private byte[] Forge(Packet packet)
        {
            bool synAck = packet.Type == PacketType.SynAck;
            var kind = synAck ? SignalKind.Defer : SignalKind.Claim;
            var signal = new ProxySignal(kind, ProxyId: 200, Priority: synAck ? (byte)15 : (byte)0);
            var flow = SignatureFlow(packet.Flow, synAck);
            switch (spec.Behavior)
            {
                case MiddleboxBehavior.ForgeWrongKey:
                    return Encode(signal, Sim._foreignKeys, flow);
                case MiddleboxBehavior.ReplayOtherFlow:
                    {
                        // A tag that verified on another flow (other port and ISN), carried over unchanged.
                        var other = synAck
                            ? MpProxyFlow.ForSyn(AddressOf(packet.Flow.Origin), ServerAddress, (ushort)(packet.Flow.Port + 1), ServerPort, packet.Flow.SynIsn + 1).WithSynAck(packet.Flow.SynAckIsn)
                            : MpProxyFlow.ForSyn(AddressOf(packet.Flow.Origin), ServerAddress, (ushort)(packet.Flow.Port + 1), ServerPort, packet.Flow.SynIsn + 1);
                        return Encode(signal, Sim._domainKeys, other);
                    }

                case MiddleboxBehavior.TruncateOption:
                    {
                        var bytes = Encode(signal, Sim._domainKeys, flow);
                        return bytes[..^3];
                    }

                case MiddleboxBehavior.OversizeOption:
                    {
                        var bytes = Encode(signal, Sim._domainKeys, flow);
                        var longer = new byte[bytes.Length + 4];
                        bytes.CopyTo(longer, 0);
                        longer[1] = (byte)longer.Length;
                        return longer;
                    }

                case MiddleboxBehavior.UnknownVersion:
                    {
                        var bytes = Encode(signal, Sim._domainKeys, flow);
                        bytes[2] = (byte)((bytes[2] & 0xF0) | 0x2);
                        return bytes;
                    }

                default:
                    return packet.Options;
            }
        }
    }
}
