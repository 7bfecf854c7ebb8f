using System.Globalization;
using System.Net;
using ProxySelection.Host.Control;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// Issue 12, hostile suite over IPv6 (2001:db8::/32): the spoofed MP_CAPABLE SYN floods of <see cref="SpoofedFloodTests"/>
/// with IPv6 sources and destinations, <c>mptcpize run curl</c> downloads (1 MB, SHA-256) of an IPv6 server beside them.
/// The lab's IPv6 nginx speaks MPTCP; <see cref="TcpOnlyServer"/> is made TCP-only for the network by stripping MP_CAPABLE
/// from its SYN/ACKs (TCPOPTSTRIP in the server namespace: the client's third ACK then lacks it and the server falls back,
/// as a TCP-only stack answers). CI scale: <see cref="HostileLab.CiFloodSeconds"/> s per flood, about 1 min for both.
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class SpoofedFloodV6Tests
{
    /// <summary>Spoofed IPv6 sources; the proxy routes their SYN/ACKs back toward the client namespace, which drops them.</summary>
    private static readonly IPAddress SpoofedSourcesV6 = IPAddress.Parse("2001:db8:f000::");
    private const int SpoofedPrefixLengthV6 = 48;

    /// <summary>An address of <see cref="HostileLab.ManyDestinationsV6"/> whose server answers as a TCP-only stack.</summary>
    private static readonly IPAddress TcpOnlyServer = IPAddress.Parse(HostileLab.ManyDestinationsV6 + "7");

    private static string TcpOnlyUrl => $"http://[{TcpOnlyServer}]/file.bin";

    [Test]
    public async Task SpoofedSynFloodV6_2000PerSecondToACachedTcpOnlyServer_99PercentOfDownloadsWholeAndMemoryBackNearBaselineAfterTheTrim()
    {
        const double Rate = 2_000;
        await using var lab = await StartAsync();
        await PrimeTcpOnlyAsync(lab);
        long baseline = lab.RssKiB();
        var dropsBefore = await lab.QueueDropsAsync();

        var flood = SegmentGenerator.RunAsync(lab.Client, HostileSegment.MpCapableSyn(SpoofedSourcesV6, TcpOnlyServer) with
        {
            SourcePrefixLength = SpoofedPrefixLengthV6,
        }, Limits(Rate));
        var rss = lab.MaxRssWhileAsync(flood);
        var status = lab.StatusWhileAsync(flood);
        var downloads = await lab.DownloadLoopAsync(flood, minimum: 20, HostileLab.FloodSeconds + TimeSpan.FromSeconds(90), _ => TcpOnlyUrl);
        var sent = await flood.WaitAsync(TimeSpan.FromSeconds(60));
        long peak = await rss.WaitAsync(TimeSpan.FromSeconds(10));
        var maxima = await status.WaitAsync(TimeSpan.FromSeconds(30));
        var dropsAfter = await lab.QueueDropsAsync();
        var intercepted = lab.Events("syn").Count(e => e.Client!.StartsWith("[2001:db8:f000:", StringComparison.Ordinal) && e.Verdict == "Intercept");
        // The daemon gives the flood's memory back once the host was quiet for 5 s (IdleTrim); RSS is read after that.
        long bound = baseline + HostileLab.TrimmedRssAboveBaselineKiB;
        var trimmed = await lab.WaitForTrimAsync(TimeSpan.FromSeconds(60));
        long after = lab.RssKiB();

        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"IPv6 spoofed flood to cached TCP-only server: {sent}; spoofed SYNs intercepted {intercepted}; legit {downloads}; RSS before {baseline} KiB, peak {peak} KiB, after {after} KiB (bound {bound}: {trimmed}); " +
            $"{maxima}; queue drops {dropsAfter.QueueDropped - dropsBefore.QueueDropped}, user drops {dropsAfter.UserDropped - dropsBefore.UserDropped}; load {HostileLab.Load()}"));
        Assert.Multiple(() =>
        {
            Assert.That(sent.AchievedPerSecond, Is.GreaterThanOrEqualTo(Rate * 0.9), "the generator kept the rate");
            Assert.That(intercepted, Is.GreaterThan(0), "the flood met the cached TCP-only state (else it says nothing about the listener)");
            Assert.That(downloads.SuccessRate, Is.GreaterThanOrEqualTo(0.99), downloads.ToString());
            Assert.That(lab.Daemon.HasExited, Is.False, "the daemon survived");
            Assert.That(peak, Is.LessThan(512 * 1024), "peak RSS (KiB) stays bounded");
            Assert.That(after, Is.LessThanOrEqualTo(bound), "RSS (KiB) back near the baseline after the trim");
        });
    }

    /// <summary>The IPv6 side of <see cref="SpoofedFloodTests.SpoofedSynFlood_ToManyDestinations_ProbesRateLimitedPerSourcePrefixLogBoundedDownloadsWhole"/>.</summary>
    internal static readonly SpoofedFloodTests.ManyDestinationsFlood ManyDestinations = new(
        StartAsync,
        PrimeTcpOnlyAsync,
        HostileSegment.MpCapableSyn(SpoofedSourcesV6, HostileLab.ManyDestinationsV6) with
        {
            SourcePrefixLength = 54, // four /56s
            DestinationPrefixLength = HostileLab.ManyDestinationsV6PrefixLength,
        },
        SpoofedClients: "[2001:db8:f000:",
        Destinations: "[2001:db8:80:",
        PrimedServer: $"[{TcpOnlyServer}]",
        Url: _ => TcpOnlyUrl,
        LimitedReasons: ["ProbeRateLimited", "ProbeRateCapped"]);

    private static GeneratorLimits Limits(double rate) =>
        new(rate, (long)(rate * HostileLab.FloodSeconds.TotalSeconds), HostileLab.FloodSeconds + TimeSpan.FromSeconds(5));

    /// <summary>The hostile lab, plus the IPv6 pieces: a route back toward the spoofed sources, and <see cref="TcpOnlyServer"/>.</summary>
    private static async Task<HostileLab> StartAsync()
    {
        var lab = await HostileLab.StartAsync();
        try
        {
            var t = lab.Proxy.Topology;
            await t.Proxy.IpAsync("-6", "route", "add", $"{SpoofedSourcesV6}/{SpoofedPrefixLengthV6}", "via", TwoPathTopology.ClientPath1V6);
            await t.Server.CheckAsync("ip6tables", ["-t", "mangle", "-A", "OUTPUT", "-s", TcpOnlyServer.ToString(), "-p", "tcp", "--sport", "80",
                "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "TCPOPTSTRIP", "--strip-options", "30"], ProxyLab.Timeout);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>Downloads from <see cref="TcpOnlyServer"/> until the cache holds its TCP-only state (at most 5 tries; a flush clears a timed-out probe's Unresolved).</summary>
    private static async Task PrimeTcpOnlyAsync(HostileLab lab)
    {
        var key = $"[{TcpOnlyServer}]:80";
        for (int i = 0; i < 5; i++)
        {
            var primed = await lab.DownloadLoopAsync(Task.CompletedTask, 1, TimeSpan.FromSeconds(60), _ => TcpOnlyUrl);
            Assert.That(primed.Succeeded, Is.EqualTo(1), "the TCP-only IPv6 server serves through the proxy: " + primed);
            if ((await lab.CacheAsync()).GetValueOrDefault(key) == "TcpOnly")
            {
                return;
            }

            Assert.That((await ControlClient.SendAsync(lab.ControlSocket, ControlCommand.CacheFlush, ProxyLab.Timeout)).Ok, Is.True);
        }

        Assert.Fail($"{key}'s TCP-only state was not cached after 5 downloads");
    }
}
