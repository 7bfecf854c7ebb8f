using System.Globalization;
using System.Net;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// The generator alone: how fast it sends spoofed MP_CAPABLE SYNs from a namespace when nothing downstream costs CPU (a
/// namespace behind a veth pair drops them: it owns none of the addresses and does not forward). The floods' figures are bounded by this and by the proxy's own work on the same cores.
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class GeneratorRateTests
{
    [Test]
    public async Task Generator_20000SynPerSecondIntoASink_KeepsTheRateWithinBothBounds()
    {
        const double Rate = 20_000;
        var duration = TimeSpan.FromSeconds(3);
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("gen");
        var sink = await lab.AddNamespaceAsync("sink");
        await lab.ConnectAsync(ns, "out", sink, "in");
        await ns.AddAddressAsync("out", "198.18.5.1/24");
        await sink.AddAddressAsync("in", "198.18.5.2/24");
        await ns.AddRouteAsync("198.18.64.0/18", via: "198.18.5.2");
        var segment = HostileSegment.MpCapableSyn(HostileLab.SpoofedSources, IPAddress.Parse("198.18.64.0")) with
        {
            SourcePrefixLength = HostileLab.SpoofedPrefixLength,
            DestinationPrefixLength = 18,
        };

        var result = await SegmentGenerator.RunAsync(ns, segment, new GeneratorLimits(Rate, (long)(Rate * duration.TotalSeconds), duration))
            .WaitAsync(duration + TimeSpan.FromSeconds(30));
        var capped = await SegmentGenerator.RunAsync(ns, segment, new GeneratorLimits(Rate, 1_000, duration)).WaitAsync(duration + TimeSpan.FromSeconds(30));
        var sent = long.Parse((await ns.CheckAsync("cat", ["/sys/class/net/out/statistics/tx_packets"])).Trim(), CultureInfo.InvariantCulture);

        TestContext.Progress.WriteLine($"generator alone at {Rate}/s: {result}; count-bounded run: {capped}; veth tx {sent}; load {HostileLab.Load()}");
        Assert.Multiple(() =>
        {
            Assert.That(result.Failed, Is.Zero, "the kernel took every segment");
            Assert.That(result.Sent, Is.LessThanOrEqualTo((long)(Rate * duration.TotalSeconds)), "never beyond the count bound");
            Assert.That(result.Elapsed, Is.LessThan(duration + TimeSpan.FromSeconds(1)), "the time bound holds");
            Assert.That(result.AchievedPerSecond, Is.GreaterThanOrEqualTo(Rate * 0.5), "at least half the rate, even on a loaded machine");
            Assert.That(capped.Sent, Is.EqualTo(1_000), "the count bound ends a run first when it comes first");
            Assert.That(sent, Is.InRange(result.Sent + capped.Sent, result.Sent + capped.Sent + 20), "every segment left by the veth (plus a few ARP/ND packets)");
        });
    }
}
