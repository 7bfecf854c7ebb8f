using System.Diagnostics;
using System.Globalization;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 4 acceptance: both client links limited to 50 Mbit/s, MPTCP through the proxy against one path (the figures
/// are recorded, the test asserts completion and integrity); one link taken down mid-transfer.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyMultipathTests
{
    private const int Size = 20 * 1024 * 1024;

    [Test]
    public async Task TwoLimitedLinks_MptcpThroughProxyUsesBoth_DownloadsIntact()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        await LimitAsync(lab);
        var proxy = await lab.StartProxyAsync();

        var single = await TimedCurlAsync(lab, mptcp: false, "single.out");
        var multi = await TimedCurlAsync(lab, mptcp: true, "multi.out");

        Assert.That(ProxyLab.Sha256Of(Path.Combine(lab.Directory, "single.out")), Is.EqualTo(sha));
        Assert.That(ProxyLab.Sha256Of(Path.Combine(lab.Directory, "multi.out")), Is.EqualTo(sha));
        var relay = await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        Assert.That(relay, Does.Contain("subflows=2"));
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"20 MB, both links 50 Mbit/s: one path (TCP, passed) {single.TotalSeconds:F2} s = {Size * 8 / single.TotalSeconds / 1e6:F1} Mbit/s; " +
            $"MPTCP through the proxy {multi.TotalSeconds:F2} s = {Size * 8 / multi.TotalSeconds / 1e6:F1} Mbit/s; ratio {single / multi:F2}x"));
    }

    [Test]
    public async Task LinkDownMidTransfer_MptcpThroughProxyContinuesOnTheOtherPath_DownloadIntact()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        await LimitAsync(lab);
        var proxy = await lab.StartProxyAsync();

        var output = Path.Combine(lab.Directory, "file.out");
        var watch = Stopwatch.StartNew();
        var download = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60));
        // A quarter in, over both subflows, path2 goes down at the proxy; then the file's growth shows the stall.
        while (Length(output) < Size / 4 && !download.IsCompleted && watch.Elapsed < ProxyLab.Timeout)
        {
            await Task.Delay(20);
        }

        await lab.Topology.Proxy.SetLinkAsync(TwoPathTopology.ProxyPath2, up: false);
        var down = watch.Elapsed;
        long downAt = Length(output);
        var stall = TimeSpan.Zero;
        var lastGrowth = watch.Elapsed;
        long last = downAt;
        while (!download.IsCompleted && watch.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(20);
            long now = Length(output);
            if (now != last)
            {
                stall = TimeSpan.FromTicks(Math.Max(stall.Ticks, (watch.Elapsed - lastGrowth).Ticks));
                lastGrowth = watch.Elapsed;
                last = now;
            }
        }

        var curl = await download;
        watch.Stop();

        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(downAt, Is.LessThan(Size), "the link went down mid-transfer");
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        var relay = await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        Assert.That(relay, Does.Contain("subflows=2"));
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"20 MB over two 50 Mbit/s paths, path2 down at {down.TotalSeconds:F2} s ({downAt / 1048576.0:F1} MB in): completed in {watch.Elapsed.TotalSeconds:F2} s, longest stall {stall.TotalMilliseconds:F0} ms; {relay}"));
    }

    private static long Length(string path) => File.Exists(path) ? new FileInfo(path).Length : 0;

    /// <summary>50 Mbit/s each way on both client paths (HTB on both ends of each link).</summary>
    private static async Task LimitAsync(ProxyLab lab)
    {
        foreach (var (ns, device) in new[]
        {
            (lab.Topology.Proxy, TwoPathTopology.ProxyPath1), (lab.Topology.Proxy, TwoPathTopology.ProxyPath2),
            (lab.Topology.Client, TwoPathTopology.ClientPath1), (lab.Topology.Client, TwoPathTopology.ClientPath2),
        })
        {
            await ns.SetRateLimitAsync(device, "50mbit").WaitAsync(ProxyLab.Timeout);
        }
    }

    private static async Task<TimeSpan> TimedCurlAsync(ProxyLab lab, bool mptcp, string name)
    {
        var watch = Stopwatch.StartNew();
        var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp, Path.Combine(lab.Directory, name), TimeSpan.FromSeconds(60));
        watch.Stop();
        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(curl.StdOut, Does.StartWith($"200 {Size} "));
        // curl's own transfer time (the third field), without the process start-up.
        return TimeSpan.FromSeconds(double.Parse(curl.StdOut.Split(' ')[2], CultureInfo.InvariantCulture));
    }
}
