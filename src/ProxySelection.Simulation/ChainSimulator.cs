using Microsoft.Extensions.Time.Testing;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Negotiation.Simulation;

/// <summary>
/// Deterministic discrete-event simulation of SYN / SYN-ACK exchanges along a chain, running the real
/// <see cref="ProxyNegotiator"/> at every proxy. MP_PROXY travels as real option bytes (written by
/// <see cref="SignalCodec"/>, read back at every hop through <see cref="MpProxyCodec"/> and verified with
/// <see cref="MpProxyKeyRing"/>), so stripping, truncation and spoofing go through the real codec. Time is a
/// <see cref="FakeTimeProvider"/> advanced event by event; all randomness (ISNs, keys) comes from the seed.
/// </summary>
public sealed partial class ChainSimulator
{
    private const int MaxEventsPerPhase = 20_000;
    private static readonly TimeSpan PhaseLimit = TimeSpan.FromSeconds(10);
    private static readonly DateTimeOffset Epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly ChainSpec _spec;
    private readonly Random _random;
    private readonly FakeTimeProvider _time = new(Epoch);
    private readonly PriorityQueue<Action, (long Ticks, long Sequence)> _events = new();
    private readonly Node[] _nodes;
    private readonly MpProxyKeyRing _domainKeys;
    private readonly MpProxyKeyRing _foreignKeys;
    private readonly List<Flow> _flows = [];
    private long _sequence;
    private int _nextFlowId;
    private Window _window = new();

    private ChainSimulator(ChainSpec spec, int seed)
    {
        _spec = spec;
        _random = new Random(seed);
        _domainKeys = new MpProxyKeyRing(1, RandomKey());
        _foreignKeys = new MpProxyKeyRing(1, RandomKey());
        _nodes = new Node[spec.Hops.Count + 2];
        _nodes[0] = new ClientNode(this, 0);
        for (int i = 0; i < spec.Hops.Count; i++)
        {
            _nodes[i + 1] = spec.Hops[i] switch
            {
                ProxyHop proxy => new ProxyNode(this, i + 1, proxy),
                MiddleboxHop box => new MiddleboxNode(this, i + 1, box),
                _ => throw new ArgumentException("unknown hop kind", nameof(spec)),
            };
        }

        _nodes[^1] = new ServerNode(this, _nodes.Length - 1);
    }

    private TimeSpan Now => _time.GetUtcNow() - Epoch;

    private ServerNode Server => (ServerNode)_nodes[^1];

    private ClientNode Client => (ClientNode)_nodes[0];

    /// <summary>Runs <see cref="ChainSpec.Connections"/> connections through the chain, one after another.</summary>
    public static ChainOutcome Run(ChainSpec spec, int seed)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var simulator = new ChainSimulator(spec, seed);
        var outcomes = new List<ConnectionOutcome>(spec.Connections);
        for (int i = 0; i < spec.Connections; i++)
        {
            outcomes.Add(simulator.RunConnection(i));
        }

        simulator.Dispose();
        return new ChainOutcome(spec, seed, outcomes);
    }

    private byte[] RandomKey()
    {
        var key = new byte[32];
        _random.NextBytes(key);
        return key;
    }

    private void Dispose()
    {
        foreach (var node in _nodes)
        {
            (node as ProxyNode)?.Negotiator.Dispose();
        }
    }

    private ConnectionOutcome RunConnection(int index)
    {
        _window = new Window();
        var violations = new List<string>();
        var start = Now;
        var client = Client.Open(index);
        RunUntilQuiet(violations);

        var direct = 2 * (_nodes.Length - 1) * _spec.LinkLatency;
        var (legs, holders, completed) = TracePath(client);
        var setup = Client.EstablishedAt is { } at ? at - start : PhaseLimit;
        if (setup >= TimeSpan.FromSeconds(1))
        {
            violations.Add($"client SYN/ACK after {setup.TotalMilliseconds} ms: the client would have retransmitted");
        }

        CheckUntouched(legs, holders, violations);
        int extra = _window.OpenedByProxies.Count(f => !legs.Contains(f));
        int context = _window.ContextHolders.Count;
        int probes = _window.Probes;

        bool joins = completed && RunJoins(legs, violations);
        Close(legs, violations);
        RunUntilQuiet(violations);
        foreach (var node in _nodes.OfType<ProxyNode>())
        {
            node.CheckQuiet(violations);
        }

        return new ConnectionOutcome
        {
            Index = index,
            Completed = completed,
            ClientGotMptcp = client.Established && client.MptcpAnswered,
            MptcpEndToEnd = completed && holders.Count == 0 && client.MptcpAnswered,
            Holders = holders,
            ContextHolders = context,
            ExtraUpstreamConnections = extra,
            Probes = probes,
            SetupTime = setup,
            DirectRoundTrip = direct,
            ClientSawClaim = Client.SawClaim,
            JoinsLanded = joins,
            Violations = violations,
        };
    }

    /// <summary>Follows the client's flow leg by leg to whoever finally answered it.</summary>
    private (List<Flow> Legs, List<Holder> Holders, bool Completed) TracePath(Flow client)
    {
        var legs = new List<Flow>();
        var holders = new List<Holder>();
        var flow = client;
        while (flow is not null && legs.Count < _nodes.Length)
        {
            legs.Add(flow);
            if (!flow.Established || flow.TerminatedBy < 0)
            {
                return (legs, holders, false);
            }

            if (flow.TerminatedBy == _nodes.Length - 1)
            {
                return (legs, holders, true);
            }

            var proxy = (ProxyNode)_nodes[flow.TerminatedBy];
            holders.Add(new Holder(proxy.Index, proxy.Spec.ProxyId, proxy.Spec.Role));
            flow = flow.Upstream;
        }

        return (legs, holders, false);
    }

    /// <summary>Every proxy between a leg's ends forwarded the leg's packets as it got them (design §2 property 2).</summary>
    private void CheckUntouched(List<Flow> legs, List<Holder> holders, List<string> violations)
    {
        foreach (var leg in legs)
        {
            foreach (var touch in leg.Touches)
            {
                violations.Add($"P{((ProxyNode)_nodes[touch]).Spec.ProxyId} acted on leg {leg.Id} without holding it");
            }

            foreach (var (node, received, forwarded) in leg.Forwards)
            {
                if (!received.AsSpan().SequenceEqual(forwarded))
                {
                    violations.Add($"node {node} changed leg {leg.Id}'s options while passing it");
                }
            }
        }

        _ = holders;
    }

    /// <summary>Each MPTCP stretch sends an MP_JOIN with its token: only that stretch's terminator may take it.</summary>
    private bool RunJoins(List<Flow> legs, List<string> violations)
    {
        var joins = new List<(Flow Join, int ExpectedTerminator)>();
        foreach (var leg in legs)
        {
            if (leg.MptcpAnswered)
            {
                var join = NewFlow(leg.Origin, isProbe: false);
                join.IsJoin = true;
                join.JoinToken = TokenOf(leg);
                joins.Add((join, leg.TerminatedBy));
                _nodes[leg.Origin].Send(new Packet(join, PacketType.Syn, towardServer: true, mpCapable: false, []));
            }
        }

        RunUntilQuiet(violations);
        bool ok = true;
        foreach (var (join, expected) in joins)
        {
            if (join.TerminatedBy != expected || !join.Established)
            {
                violations.Add($"MP_JOIN for leg token {join.JoinToken:x8} ended at node {join.TerminatedBy}, expected node {expected}");
                ok = false;
            }

            foreach (var touch in join.Touches)
            {
                violations.Add($"node {touch} acted on a foreign MP_JOIN");
                ok = false;
            }
        }

        return ok;
    }

    private void Close(List<Flow> legs, List<string> violations)
    {
        foreach (var leg in legs)
        {
            if (leg.TerminatedBy > 0 && _nodes[leg.TerminatedBy] is ProxyNode proxy)
            {
                proxy.CloseIntercepted(leg, sendReset: false);
            }
        }

        _ = violations;
    }

    private void RunUntilQuiet(List<string> violations)
    {
        var deadline = Now + PhaseLimit;
        int processed = 0;
        while (_events.TryDequeue(out var action, out var at))
        {
            var when = TimeSpan.FromTicks(at.Ticks);
            if (when > deadline || ++processed > MaxEventsPerPhase)
            {
                violations.Add("simulation did not settle (event or time limit)");
                _events.Clear();
                return;
            }

            if (when > Now)
            {
                // Timers due by then fire inside Advance, at their own due time: a tick is queued for every deadline.
                _time.Advance(when - Now);
            }

            action();
        }
    }

    private void Schedule(TimeSpan delay, Action action) =>
        _events.Enqueue(action, ((Now + delay).Ticks, ++_sequence));

    private Flow NewFlow(int origin, bool isProbe)
    {
        var flow = new Flow(++_nextFlowId, origin, (ushort)(20_000 + _nextFlowId), (uint)_random.NextInt64(1, uint.MaxValue), isProbe);
        _flows.Add(flow);
        return flow;
    }

    private static uint TokenOf(Flow flow) => ((uint)flow.Id * 2_654_435_761u) | 1;

    private static byte[] AddressOf(int node) => [198, 18, 0, (byte)(node + 1)];

    private static readonly byte[] ServerAddress = [198, 18, 1, 1];
    private const ushort ServerPort = 443;

    private static FlowKey KeyOf(Flow flow) =>
        new(new DestinationKey(AddressOf(flow.Origin), flow.Port), new DestinationKey(ServerAddress, ServerPort));

    private static MpProxyFlow SignatureFlow(Flow flow, bool synAck) =>
        synAck
            ? MpProxyFlow.ForSyn(AddressOf(flow.Origin), ServerAddress, flow.Port, ServerPort, flow.SynIsn).WithSynAck(flow.SynAckIsn)
            : MpProxyFlow.ForSyn(AddressOf(flow.Origin), ServerAddress, flow.Port, ServerPort, flow.SynIsn);

    /// <summary>The interface index every proxy gives its client-side link (the simulated path has one per side).</summary>
    private const int ClientSideInterface = 1;

    /// <summary>The §5.1 segment type of a simulated SYN or SYN/ACK.</summary>
    private static MpProxySegment SegmentOf(Packet packet) => (packet.Type, packet.Flow.IsJoin, packet.MpCapable) switch
    {
        (PacketType.SynAck, true, _) => MpProxySegment.JoinSynAck,
        (PacketType.SynAck, false, _) => MpProxySegment.SynAck,
        (_, true, _) => MpProxySegment.JoinSyn,
        (_, false, true) => MpProxySegment.MpCapableSyn,
        _ => MpProxySegment.TcpSyn,
    };

    /// <summary>A SYN/ACK's acknowledgment number: the SYN's ISN + 1, unless a middlebox forged the answer.</summary>
    private static uint AckOf(Packet packet) => packet.AckNumber ?? unchecked(packet.Flow.SynIsn + 1);

    private static byte[] Encode(ProxySignal? signal, MpProxyKeyRing ring, in MpProxyFlow flow)
    {
        if (signal is not { } value)
        {
            return [];
        }

        Span<byte> buffer = stackalloc byte[MpProxyOption.LongLength];
        int written = SignalCodec.Write(buffer, value, ring, flow);
        return buffer[..written].ToArray();
    }

    /// <summary>Per-connection bookkeeping for the comparison.</summary>
    private sealed class Window
    {
        public HashSet<int> ContextHolders { get; } = [];

        public List<Flow> OpenedByProxies { get; } = [];

        public int Probes { get; set; }
    }

    private enum PacketType
    {
        Syn,
        SynAck,
        Rst,
    }

    private sealed class Flow(int id, int origin, ushort port, uint synIsn, bool isProbe)
    {
        public int Id { get; } = id;

        public int Origin { get; } = origin;

        public ushort Port { get; } = port;

        public uint SynIsn { get; } = synIsn;

        public uint SynAckIsn { get; set; }

        public bool IsProbe { get; } = isProbe;

        public bool IsJoin { get; set; }

        public uint JoinToken { get; set; }

        /// <summary>Node that answered the SYN (a proxy that intercepted it, or the server); -1 while none.</summary>
        public int TerminatedBy { get; set; } = -1;

        public bool Established { get; set; }

        public bool MptcpAnswered { get; set; }

        public bool Closed { get; set; }

        /// <summary>The leg the terminating proxy opened (or adopted) to carry this flow on.</summary>
        public Flow? Upstream { get; set; }

        /// <summary>Proxies that answered, held-and-dropped or otherwise acted on this flow without terminating it as holder.</summary>
        public List<int> Touches { get; } = [];

        public List<(int Node, byte[] Received, byte[] Forwarded)> Forwards { get; } = [];
    }

    private sealed class Packet(Flow flow, PacketType type, bool towardServer, bool mpCapable, byte[] options)
    {
        public Flow Flow { get; } = flow;

        public PacketType Type { get; } = type;

        public bool TowardServer { get; } = towardServer;

        public bool MpCapable { get; } = mpCapable;

        /// <summary>For a SYN/ACK: the acknowledgment number when it is not the SYN's ISN + 1 (a forged answer).</summary>
        public uint? AckNumber { get; init; }

        /// <summary>The TCP option bytes this simulation carries: MP_PROXY (or what a middlebox made of it).</summary>
        public byte[] Options { get; } = options;

        public Packet With(bool mpCapable, byte[] options) => new(Flow, Type, TowardServer, mpCapable, options);
    }
}
