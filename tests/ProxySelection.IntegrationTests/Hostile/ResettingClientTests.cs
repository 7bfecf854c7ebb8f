using System.Globalization;
using System.Net;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// Issue 12, hostile suite: one unspoofed client sends 3,000 MP_CAPABLE SYN/s to destinations that answer, and resets
/// every SYN/ACK (its raw SYNs have no socket, so its kernel answers RST). Slots must not go to connections that never
/// arrive: legitimate connections from another address of that host are still held.
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class ResettingClientTests
{
    [Test]
    public async Task OneClientAt3000SynPerSecondResettingItsSynAcks_90PercentOfLegitimateConnectionsStillHeld()
    {
        const double Rate = 3_000;
        await using var lab = await HostileLab.StartAsync();
        await lab.PrimeAsync();
        int acceptedBefore = LegitAccepted(lab);

        // From the client's path2 address; ports below the kernel's ephemeral range keep clear of the legitimate subflows.
        var segment = HostileSegment.MpCapableSyn(IPAddress.Parse(TwoPathTopology.ClientPath2V4), HostileLab.ManyDestinations) with
        {
            DestinationPrefixLength = 20,
            SourcePortRange = (1024, 32767),
        };
        var duration = HostileLab.FloodSeconds;
        var flood = SegmentGenerator.RunAsync(lab.Client, segment, new GeneratorLimits(Rate, (long)(Rate * duration.TotalSeconds), duration + TimeSpan.FromSeconds(5)));
        var status = lab.StatusWhileAsync(flood);
        var downloads = await lab.DownloadLoopAsync(flood, minimum: 20, duration + TimeSpan.FromSeconds(90));
        var sent = await flood.WaitAsync(TimeSpan.FromSeconds(60));
        var maxima = await status.WaitAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(1));
        int held = LegitAccepted(lab) - acceptedBefore;
        double heldRate = downloads.Attempts == 0 ? 0 : (double)held / downloads.Attempts;
        var legit = lab.Events("syn").Where(e => e.Client!.StartsWith(TwoPathTopology.ClientPath1V4 + ":", StringComparison.Ordinal) && e.Kind == "MpCapable").ToList();
        var attacker = lab.Events("syn").Where(e => e.Client!.StartsWith(TwoPathTopology.ClientPath2V4 + ":", StringComparison.Ordinal) && e.Kind == "MpCapable").ToList();

        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"resetting client at {Rate}/s: {sent}; attacker SYNs seen {attacker.Count} ({string.Join(", ", attacker.GroupBy(e => e.Verdict + "/" + e.Reason).Select(g => $"{g.Key} {g.Count()}"))}); " +
            $"legit {downloads}, held {held} of {downloads.Attempts} ({heldRate:P1}), legit SYN verdicts ({string.Join(", ", legit.GroupBy(e => e.Verdict + "/" + e.Reason).Select(g => $"{g.Key} {g.Count()}"))}); {maxima}; load {HostileLab.Load()}"));
        Assert.Multiple(() =>
        {
            Assert.That(sent.AchievedPerSecond, Is.GreaterThanOrEqualTo(Rate * 0.9), "the generator kept the rate");
            Assert.That(heldRate, Is.GreaterThanOrEqualTo(0.9), "legitimate connections held (intercepted and accepted)");
            Assert.That(downloads.SuccessRate, Is.GreaterThanOrEqualTo(0.99), downloads.ToString());
            Assert.That(maxima.Listed, Is.LessThanOrEqualTo(maxima.HeldConnections), "status lists no more than it counts");
        });
    }

    /// <summary>Accepted connections from the legitimate client's path1 address to the server.</summary>
    private static int LegitAccepted(HostileLab lab) => lab.Events("accepted").Count(e =>
        e.Client!.StartsWith(TwoPathTopology.ClientPath1V4 + ":", StringComparison.Ordinal) && e.Destination == HostileLab.Server + ":80");
}
