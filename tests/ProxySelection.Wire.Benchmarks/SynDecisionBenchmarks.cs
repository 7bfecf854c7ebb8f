using System.Net;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine;
using ProxySelection.Engine.Hook;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Negotiation;
using ProxySelection.Tests;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Wire.Benchmarks;

/// <summary>
/// The SYN path as it is today (issue 13 item 6). The negotiator alone: its decision for a plain TCP SYN (pass-through)
/// and for an MP_CAPABLE SYN whose destination is cached (the cache hit that intercepts), and the two endpoints the hook
/// builds. Then the whole user-space path of a queued SYN, <c>ProxyEngine.OnPacket</c> (the NFQUEUE hook's handler:
/// Wire parse, MP_PROXY read in explicit mode, negotiator, flow table, events off, verdict) through the verdict seam
/// with a verdict sink that does nothing: a cache-hit pass toward a known MPTCP server, a join whose token this proxy
/// does not hold, and a cache-hit intercept toward a known TCP-only server (with its flow's expiry, a fake clock
/// advanced past the accept deadline, so the table stays at one flow). The kernel's part (the queue's netlink round
/// trip, 13-18 µs measured) is not in these figures. The per-SYN log line of earlier rounds is gone from the path
/// ([LoggerMessage] at Debug behind IsEnabled), so it is no longer timed.
/// Measured 2026-12-07 03:50 UTC (ShortRun, load ~25, so the spread is wide): engine cache-hit pass toward an MPTCP
/// server 0.79 µs (192 B), foreign join pass 1.05 µs (192 B), cache-hit intercept with its expiry 10.4 µs (508 B);
/// negotiator alone: TCP pass 0.11 µs, cache-hit intercept 0.40 µs; endpoints 0.06 µs. Run:
/// <c>dotnet run -c Release --project tests/ProxySelection.Wire.Benchmarks -- --filter '*SynDecision*' --buildTimeout 1200</c>.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class SynDecisionBenchmarks : INegotiationSink
{
    private static readonly DestinationKey Client = new([198, 18, 0, 1], 40000);
    private static readonly DestinationKey Server = new([198, 18, 0, 2], 443);
    private static readonly DestinationKey MptcpServer = new([198, 18, 0, 2], PacketBuilder.ServerPort);
    private ProxyNegotiator _negotiator = null!;
    private readonly FakeTimeProvider _time = new();
    private readonly NoVerdicts _verdicts = new();
    private ProxyEngine _engine = null!;
    private byte[] _mptcpSyn = null!;
    private byte[] _foreignJoin = null!;
    private byte[][] _interceptSyns = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _negotiator = new ProxyNegotiator(new NegotiatorOptions(), TimeProvider.System, this);
        _negotiator.Cache.Set(Server, CapabilityState.TcpOnly);
        if (CacheHitIntercept() != SynVerdict.Intercept || PassThroughTcpSyn() != SynVerdict.Pass)
        {
            throw new InvalidOperationException("the decisions are not the ones measured");
        }

        // The daemon's defaults (downgrade, explicit mode), one port, the kernel edges replaced.
        var ring = new MpProxyKeyRing(1, [.. Enumerable.Range(0, 32).Select(i => (byte)i)]);
        var options = new ProxyEngineOptions { KeyRing = ring, Ports = [PacketBuilder.ServerPort], Warmup = false };
        _engine = new ProxyEngine(options, _time, NullLogger.Instance, _verdicts, new NoProbes(), static _ => { });
        var capable = new MpCapable(MpCapableForm.NoKey, 1, MpCapableFlags.HmacSha256);
        _mptcpSyn = PacketBuilder.Build(false, 40000, TcpFlags.Syn, capable);
        _foreignJoin = PacketBuilder.Build(false, 40001, TcpFlags.Syn, MpJoin.Syn(false, 1, 0xDEADBEEF, 7));
        // The intercept benchmark's SYNs come from the other IPv4 server address in the cache as TCP-only: ports differ so
        // no SYN is a duplicate of a flow still open.
        _interceptSyns = [.. Enumerable.Range(0, 1024).Select(i => Retarget(PacketBuilder.Build(false, (ushort)(20000 + i), TcpFlags.Syn, capable)))];
        _engine.Negotiator.Cache.Set(MptcpServer, CapabilityState.MptcpCapable);
        _engine.Negotiator.Cache.Set(new DestinationKey([198, 18, 0, 3], PacketBuilder.ServerPort), CapabilityState.TcpOnly);
        _verdicts.Last = "";
        if (EngineCacheHitPassToMptcpServer() != "accept" || EngineForeignJoinPass() != "accept" || EngineCacheHitInterceptAndExpiry() != "mark")
        {
            throw new InvalidOperationException($"the engine's verdicts are not the ones measured ({_verdicts.Last})");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _negotiator.Dispose();
        _engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>The engine, an MP_CAPABLE SYN to a server cached as MPTCP-capable: passed (the MPTCP pass-through cache hit).</summary>
    [Benchmark]
    public string EngineCacheHitPassToMptcpServer()
    {
        _engine.OnPacket(new QueuedPacket(1, 0, NetfilterHook.PreRouting, 1, _mptcpSyn));
        return _verdicts.Last;
    }

    /// <summary>The engine, an MP_JOIN SYN whose token this proxy does not hold, no accept pending: passed.</summary>
    [Benchmark]
    public string EngineForeignJoinPass()
    {
        _engine.OnPacket(new QueuedPacket(2, 0, NetfilterHook.PreRouting, 1, _foreignJoin));
        return _verdicts.Last;
    }

    /// <summary>The engine, an MP_CAPABLE SYN to a server cached as TCP-only: intercepted, then its flow expires unaccepted.</summary>
    [Benchmark]
    public string EngineCacheHitInterceptAndExpiry()
    {
        var syn = _interceptSyns[_next++ & 1023];
        _engine.OnPacket(new QueuedPacket(3, 0, NetfilterHook.PreRouting, 1, syn));
        string verdict = _verdicts.Last;
        _time.Advance(ProxyEngineOptions.MaxAdoptionTimeout);
        return verdict;
    }

    /// <summary>The packet sent to 198.18.0.3 instead (checksums refilled).</summary>
    private static byte[] Retarget(byte[] packet)
    {
        packet[19] = 3;
        if (InternetChecksum.TryFillChecksums(packet) != WireError.None)
        {
            throw new InvalidOperationException("checksum");
        }

        return packet;
    }

    /// <summary>A TCP SYN at a downgrading proxy: passed at once (NotMptcp).</summary>
    [Benchmark]
    public SynVerdict PassThroughTcpSyn() =>
        _negotiator.OnSyn(new SynObservation(new FlowKey(Client, Server), SynKind.Tcp)).Verdict;

    /// <summary>An MP_CAPABLE SYN to a destination cached as TCP-only: intercepted from the cache (the slot freed again).</summary>
    [Benchmark]
    public SynVerdict CacheHitIntercept()
    {
        var verdict = _negotiator.OnSyn(new SynObservation(new FlowKey(Client, Server), SynKind.MpCapable)).Verdict;
        _negotiator.OnConnectionClosed();
        return verdict;
    }

    /// <summary>The engine's FlowEndPoints: two IPEndPoints (and their IPAddresses) per SYN.</summary>
    [Benchmark]
    public int EndPoints()
    {
        var client = Client.ToEndPoint();
        var server = Server.ToEndPoint();
        return client.Port + server.Port;
    }

    void INegotiationSink.OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds)
    {
    }

    /// <summary>Verdicts go nowhere; the last one's kind is kept for the setup's check.</summary>
    private sealed class NoVerdicts : IPacketVerdicts
    {
        public string Last { get; set; } = "";

        public void Accept(uint packetId) => Last = "accept";

        public void AcceptWithMark(uint packetId, uint mark) => Last = "mark";

        public void AcceptWithPayload(uint packetId, ReadOnlySpan<byte> packet, uint? mark = null) => Last = "payload";

        public void Drop(uint packetId) => Last = "drop";
    }

    /// <summary>No probe is started by these paths (every SYN is a cache hit).</summary>
    private sealed class NoProbes : IProbeConnector
    {
        public IProbeSocket Open(IPEndPoint destination) => throw new InvalidOperationException("a cache hit started a probe");
    }
}
