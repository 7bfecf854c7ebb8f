using Microsoft.Extensions.Time.Testing;

namespace ProxySelection.Negotiation.Tests;

/// <summary>A negotiator on a fake clock with a sink that records every probe resolution.</summary>
internal sealed class NegotiatorHarness : INegotiationSink, IDisposable
{
    public static readonly DestinationKey Server = new([198, 18, 1, 1], 443);

    public NegotiatorHarness(Action<NegotiatorOptions>? configure = null)
    {
        var options = new NegotiatorOptions { ProxyId = 3, Priority = 5 };
        configure?.Invoke(options);
        Negotiator = new ProxyNegotiator(options, Time, this);
    }

    public FakeTimeProvider Time { get; } = new();

    public ProxyNegotiator Negotiator { get; }

    public List<(long ProbeId, bool Adopted, HoldResolution[] Holds)> Resolved { get; } = [];

    public Action<long, bool, HoldResolution[]>? OnResolved { get; set; }

    public static FlowKey Flow(int clientPort, DestinationKey? server = null) =>
        new(new DestinationKey([198, 18, 0, 1], (ushort)clientPort), server ?? Server);

    /// <summary>The interface every harness SYN arrives on unless a test says otherwise.</summary>
    public const int Ingress = 1;

    /// <summary>The ISN a harness SYN from <paramref name="clientPort"/> carries.</summary>
    public static uint IsnOf(int clientPort) => 0x1000_0000u + ((uint)clientPort * 7919u);

    public static SynObservation Syn(int clientPort, SynKind kind = SynKind.MpCapable, ProxySignal? signal = null) =>
        new(Flow(clientPort), kind, signal) { Isn = IsnOf(clientPort), IngressInterface = Ingress };

    /// <summary>A passing SYN/ACK for the flow from <paramref name="clientPort"/> that acknowledges its SYN's ISN + 1.</summary>
    public static SynAckObservation SynAck(int clientPort, bool mpCapable, ProxySignal? signal = null) =>
        new(Flow(clientPort), unchecked(IsnOf(clientPort) + 1), mpCapable, signal);

    public SynDecision OnSyn(int clientPort, SynKind kind = SynKind.MpCapable, ProxySignal? signal = null) =>
        Negotiator.OnSyn(Syn(clientPort, kind, signal));

    public HoldResolution Single()
    {
        Assert.That(Resolved, Has.Count.EqualTo(1));
        Assert.That(Resolved[0].Holds, Has.Length.EqualTo(1));
        return Resolved[0].Holds[0];
    }

    public CapabilityEntry? CacheEntry(DestinationKey? server = null) =>
        Negotiator.Cache.TryPeek(server ?? Server, out var entry) ? entry : null;

    public void OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds)
    {
        var copy = holds.ToArray();
        Resolved.Add((probeId, probeAdopted, copy));
        OnResolved?.Invoke(probeId, probeAdopted, copy);
    }

    public void Dispose() => Negotiator.Dispose();
}
