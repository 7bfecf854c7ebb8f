using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Hook;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Tests.Flows;

/// <summary>A verdict as the seam received it.</summary>
internal sealed record Verdict(string Kind, uint PacketId, uint? Mark);

/// <summary>Records verdicts; can be told to fail the next intercept (a listener that cannot open, a queue error).</summary>
internal sealed class RecordingVerdicts : IPacketVerdicts
{
    private readonly Lock _lock = new();
    private readonly List<Verdict> _verdicts = [];

    public bool FailMarks { get; set; }

    public IReadOnlyList<Verdict> All
    {
        get { lock (_lock) { return [.. _verdicts]; } }
    }

    public Verdict? For(uint packetId)
    {
        lock (_lock)
        {
            return _verdicts.LastOrDefault(v => v.PacketId == packetId);
        }
    }

    public void Accept(uint packetId) => Add(new Verdict("accept", packetId, null));

    public void AcceptWithMark(uint packetId, uint mark)
    {
        if (FailMarks)
        {
            throw new NfqueueException("test: the verdict failed");
        }

        Add(new Verdict("intercept", packetId, mark));
    }

    public void AcceptWithPayload(uint packetId, ReadOnlySpan<byte> packet, uint? mark = null) => Add(new Verdict(mark is null ? "rewrite" : "answer", packetId, mark));

    public void Drop(uint packetId) => Add(new Verdict("drop", packetId, null));

    private void Add(Verdict verdict)
    {
        lock (_lock)
        {
            _verdicts.Add(verdict);
        }
    }
}

/// <summary>Probes the test answers or lets time out.</summary>
internal sealed class FakeProbes : IProbeConnector
{
    private ushort _nextPort = 50_000;

    public List<FakeProbe> Opened { get; } = [];

    /// <summary>When set, every open fails with it (fd exhaustion: <see cref="SocketError.TooManyOpenSockets"/>).</summary>
    public SocketError? FailWith { get; set; }

    public IProbeSocket Open(IPEndPoint destination)
    {
        if (FailWith is { } error)
        {
            throw new SocketException((int)error);
        }

        var probe = new FakeProbe(_nextPort++);
        Opened.Add(probe);
        return probe;
    }
}

internal sealed class FakeProbe(ushort localPort) : IProbeSocket
{
    private readonly TaskCompletionSource _connected = new();
    private ManualResetEventSlim? _firstMptcpReadGate;
    private bool _mptcp;
    private int _mptcpReads;

    public ushort LocalPort => localPort;

    /// <summary>The first read waits for the gate of <see cref="StallFirstMptcpRead"/>, if any.</summary>
    public bool IsMptcp
    {
        get
        {
            if (Interlocked.Increment(ref _mptcpReads) == 1)
            {
                _firstMptcpReadGate?.Wait(EngineHarness.Timeout);
            }

            return _mptcp;
        }
    }

    public int MptcpReads => Volatile.Read(ref _mptcpReads);

    public bool IsEstablished { get; private set; }

    public Socket? Socket { get; set; }

    public bool Aborted { get; private set; }

    public Task ConnectAsync(IPEndPoint destination, CancellationToken cancellationToken) => _connected.Task;

    public void Answer(bool mptcp)
    {
        AnswerInKernel(mptcp);
        _connected.TrySetResult();
    }

    /// <summary>The kernel has the answer, but the connect's completion has not run (a busy or cold process).</summary>
    public void AnswerInKernel(bool mptcp)
    {
        _mptcp = mptcp;
        IsEstablished = true;
    }

    /// <summary>The connect's completion, having taken the answer, stalls at its read of MP_CAPABLE until <paramref name="gate"/> is set.</summary>
    public void StallFirstMptcpRead(ManualResetEventSlim gate) => _firstMptcpReadGate = gate;

    /// <summary>The completion runs late, after the deadline read the answer.</summary>
    public void CompleteLate() => _connected.TrySetResult();

    public void Abort()
    {
        Aborted = true;
        _connected.TrySetException(new SocketException((int)SocketError.ConnectionReset));
    }

    public void Dispose() => Abort();
}

/// <summary>Events kept in memory.</summary>
internal sealed class ListEventSink : IProxyEventSink
{
    private readonly Lock _lock = new();
    private readonly List<ProxyEvent> _events = [];

    public bool Enabled => true;

    public IReadOnlyList<ProxyEvent> Events
    {
        get { lock (_lock) { return [.. _events]; } }
    }

    public void Write(ProxyEvent proxyEvent)
    {
        lock (_lock)
        {
            _events.Add(proxyEvent);
        }
    }
}

/// <summary>An engine with its kernel edges replaced: verdicts recorded, probes faked, no listener opened, a fake clock.</summary>
internal sealed class EngineHarness : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    public static readonly IPEndPoint Client = new(IPAddress.Parse("198.18.0.1"), 0);
    public static readonly IPEndPoint Server = new(IPAddress.Parse("198.18.0.2"), PacketBuilder.ServerPort);
    private static readonly MpProxyKeyRing Ring = new(1, Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
    private uint _nextPacket = 1;

    public EngineHarness(Action<NegotiatorOptions>? negotiation = null, int maxConnections = 10_000, int maxHeldSyns = 1024, IReadOnlyList<string>? edgeInterfaces = null,
        Microsoft.Extensions.Logging.ILogger? log = null, int maxAdoptedProbes = 128)
    {
        var options = new NegotiatorOptions { Role = ProxyRole.Downgrade, Mode = SignalingMode.Implicit, MaxConnections = maxConnections };
        negotiation?.Invoke(options);
        Options = new ProxyEngineOptions
        {
            KeyRing = Ring, Negotiation = options, Ports = [PacketBuilder.ServerPort], Events = Events, MaxHeldSyns = maxHeldSyns,
            EdgeInterfaces = edgeInterfaces ?? [], MaxAdoptedProbes = maxAdoptedProbes,
        };
        Engine = new ProxyEngine(Options, Time, log ?? NullLogger.Instance, Verdicts, Probes, _ => { });
    }

    public FakeTimeProvider Time { get; } = new();

    public RecordingVerdicts Verdicts { get; } = new();

    public FakeProbes Probes { get; } = new();

    public ListEventSink Events { get; } = new();

    public ProxyEngineOptions Options { get; }

    public ProxyEngine Engine { get; }

    public int Active => Engine.Negotiator.ActiveConnections;

    public static MpCapable V1Capable => new(MpCapableForm.NoKey, 1, MpCapableFlags.HmacSha256);

    /// <summary>Feeds <paramref name="packet"/> to the ingress hook; returns its packet id.</summary>
    public uint Ingress(byte[] packet) => Ingress(packet, waited: null);

    /// <summary>Feeds <paramref name="packet"/> as if the kernel had received it <paramref name="waited"/> ago (NFQA_TIMESTAMP).</summary>
    public uint Ingress(byte[] packet, TimeSpan? waited)
    {
        uint id = _nextPacket++;
        long receivedAt = waited is { } w ? (Time.GetUtcNow() - w - DateTimeOffset.UnixEpoch).Ticks / TimeSpan.TicksPerMicrosecond : 0;
        Engine.OnPacket(new QueuedPacket(id, 0, NetfilterHook.PreRouting, 1, packet, receivedAt));
        return id;
    }

    /// <summary>An MP_CAPABLE (v1) SYN from <paramref name="clientPort"/> to the server.</summary>
    public uint MpCapableSyn(ushort clientPort, bool ipv6 = false) => Ingress(PacketBuilder.Build(ipv6, clientPort, TcpFlags.Syn, V1Capable));

    public uint JoinSyn(ushort clientPort, uint token) => Ingress(PacketBuilder.Build(false, clientPort, TcpFlags.Syn, MpJoin.Syn(false, 1, token, 7)));

    /// <summary>A SYN between two given IPv4 endpoints (loopback, for accept tests) with an MP_CAPABLE.</summary>
    public static byte[] SynBetween(IPEndPoint client, IPEndPoint server)
    {
        var packet = PacketBuilder.Build(false, (ushort)client.Port, TcpFlags.Syn, V1Capable);
        client.Address.GetAddressBytes().CopyTo(packet, 12);
        server.Address.GetAddressBytes().CopyTo(packet, 16);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), (ushort)server.Port);
        if (InternetChecksum.TryFillChecksums(packet) != WireError.None)
        {
            throw new InvalidOperationException("checksum");
        }

        return packet;
    }

    /// <summary>
    /// The server's SYN/ACK answering the probe bound to <paramref name="probePort"/>, with <paramref name="signal"/> signed
    /// under the harness key (as another proxy's answer carries it) when given.
    /// </summary>
    public static byte[] ProbeSynAck(ushort probePort, ProxySignal? signal, uint? acknowledgment = null)
    {
        var packet = PacketBuilder.Build(false, PacketBuilder.ServerPort, TcpFlags.Syn | TcpFlags.Ack, V1Capable);
        // The builder writes client -> server: turn it into server -> the probe's port.
        var source = packet.AsSpan(12, 4).ToArray();
        packet.AsSpan(16, 4).CopyTo(packet.AsSpan(12, 4));
        source.CopyTo(packet.AsSpan(16, 4));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), probePort);
        if (acknowledgment is { } acknowledged)
        {
            BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(28), acknowledged);
        }

        var buffer = new byte[packet.Length + TcpHeader.MaxOptionsLength];
        packet.CopyTo(buffer);
        int length = packet.Length;
        if (signal is { } s)
        {
            uint seq = BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(24));
            uint ack = BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(28));
            var flow = MpProxyFlow.ForSyn(packet.AsSpan(16, 4), packet.AsSpan(12, 4), probePort, PacketBuilder.ServerPort, ack - 1).WithSynAck(seq);
            Span<byte> option = stackalloc byte[TcpHeader.MaxOptionsLength];
            int written = SignalCodec.Write(option, s, Ring, flow);
            Check(OptionRewriter.TryInsert(buffer, packet.Length, option[..written], out length, ChecksumUpdate.Recompute));
        }
        else
        {
            Check(InternetChecksum.TryFillChecksums(buffer.AsSpan(0, length)));
        }

        return buffer[..length];
    }

    private static void Check(WireError error)
    {
        if (error != WireError.None)
        {
            throw new InvalidOperationException(error.ToString());
        }
    }

    public static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException(what);
            }

            await Task.Delay(5);
        }
    }

    public ValueTask DisposeAsync() => Engine.DisposeAsync();
}

/// <summary>A connected loopback TCP pair standing for a connection the transparent listener accepted (no root needed).</summary>
internal sealed class LoopbackConnection : IDisposable
{
    private LoopbackConnection(Socket listener, Socket client)
    {
        Listener = listener;
        ClientSide = client;
    }

    public Socket Listener { get; }

    public Socket ClientSide { get; }

    /// <summary>The client's endpoint (bound before connecting, so the SYN can name it).</summary>
    public IPEndPoint ClientEndPoint => (IPEndPoint)ClientSide.LocalEndPoint!;

    public IPEndPoint ListenerEndPoint => (IPEndPoint)Listener.LocalEndPoint!;

    public static LoopbackConnection Create()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return new LoopbackConnection(listener, client);
    }

    /// <summary>Connects the client and returns the accepted side (what the engine's listener would hand over).</summary>
    public async Task<Socket> ConnectAsync()
    {
        await ClientSide.ConnectAsync(ListenerEndPoint).WaitAsync(EngineHarness.Timeout);
        return await Listener.AcceptAsync().WaitAsync(EngineHarness.Timeout);
    }

    public void Dispose()
    {
        ClientSide.Dispose();
        Listener.Dispose();
    }
}
