using System.Net;
using BenchmarkDotNet.Attributes;
using ProxySelection.Negotiation;

namespace ProxySelection.Wire.Benchmarks;

/// <summary>
/// What the engine's packet hook does per SYN besides the wire parse (see <see cref="WireBenchmarks"/>): the negotiator's
/// decision for a plain TCP SYN (pass-through) and for an MP_CAPABLE SYN whose destination is cached (the cache hit that
/// intercepts), the two endpoints the hook builds for its bookkeeping, and the per-SYN log line as the engine formats it
/// (string interpolation of two IPEndPoints; the line's Console write is a syscall on top, measured with strace).
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class SynDecisionBenchmarks : INegotiationSink
{
    private static readonly DestinationKey Client = new([198, 18, 0, 1], 40000);
    private static readonly DestinationKey Server = new([198, 18, 0, 2], 443);
    private ProxyNegotiator _negotiator = null!;

    [GlobalSetup]
    public void Setup()
    {
        _negotiator = new ProxyNegotiator(new NegotiatorOptions(), TimeProvider.System, this);
        _negotiator.Cache.Set(Server, CapabilityState.TcpOnly);
        if (CacheHitIntercept() != SynVerdict.Intercept || PassThroughTcpSyn() != SynVerdict.Pass)
        {
            throw new InvalidOperationException("the decisions are not the ones measured");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _negotiator.Dispose();

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

    /// <summary>The per-SYN line <c>syn A:P -> B:Q Tcp: Pass (NotMptcp)</c> as ProxyEngine.OnSyn builds it.</summary>
    [Benchmark]
    public int LogLine()
    {
        IPEndPoint client = Client.ToEndPoint();
        IPEndPoint server = Server.ToEndPoint();
        string line = $"syn {client} -> {server} {SynKind.Tcp}: {SynVerdict.Pass} ({DecisionReason.NotMptcp})";
        return line.Length;
    }

    void INegotiationSink.OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds)
    {
    }
}
