using System.Diagnostics;
using System.Globalization;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 13, cold start: a fresh daemon's first connection, whose server needs a probe, is decided like the hundredth
/// (intercepted toward a TCP-only server), not released by a probe that timed out while the process was still compiling
/// its code. Each round is a new process; CI runs 5 rounds, <c>PSEL_COLD_STARTS=20</c> the full run.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyColdStartTests
{
    /// <param name="kernelPath">The daemon's defaults (kernel fast path and signing), or the queue path the lab pins.</param>
    [TestCase(true, TestName = "FreshDaemon_FirstConnectionNeedingAProbe_IsIntercepted_EveryStart(kernel path)")]
    [TestCase(false, TestName = "FreshDaemon_FirstConnectionNeedingAProbe_IsIntercepted_EveryStart(queue path)")]
    public async Task FreshDaemon_FirstConnectionNeedingAProbe_IsIntercepted_EveryStart(bool kernelPath)
    {
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("PSEL_COLD_STARTS"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 100 ? n : 5;
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var outcomes = new List<string>();
        var startToRunning = new List<double>();
        var idleRss = new List<long>();
        for (int round = 0; round < rounds; round++)
        {
            var watch = Stopwatch.StartNew();
            var proxy = await ProxyLab.StartProxyInAsync(lab.Topology.Proxy, kernelPath ? ProxyLab.KernelPath : []);
            startToRunning.Add(watch.Elapsed.TotalMilliseconds);
            idleRss.Add(RssKiB(proxy.Pid));
            var output = Path.Combine(lab.Directory, $"small-{round}.out");
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, output);
            await proxy.StopAsync(ProxyLab.Timeout);
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            var hold = ProxyLab.Events(proxy, "hold").FirstOrDefault();
            outcomes.Add(hold is null ? "no hold" : $"{hold.Outcome} ({hold.Reason}) after {hold.Milliseconds:F1} ms");
            TestContext.Progress.WriteLine($"cold start {round + 1} ({(kernelPath ? "kernel" : "queue")} path): start to running {startToRunning[^1]:F0} ms, idle RSS {idleRss[^1] / 1024} MiB; {outcomes[^1]}; "
                + string.Join(" ", proxy.Output.Split('\n').Where(l => l.Contains("warmed up", StringComparison.Ordinal) || l.Contains("rehears", StringComparison.Ordinal)).Select(l => l.Trim())));
        }

        TestContext.Progress.WriteLine($"start to running: {string.Join(", ", startToRunning.Select(ms => ms.ToString("F0", CultureInfo.InvariantCulture)))} ms; "
            + $"idle RSS: {string.Join(", ", idleRss.Select(k => (k / 1024).ToString(CultureInfo.InvariantCulture)))} MiB");
        Assert.That(outcomes, Has.All.StartWith("Intercept ("), "every fresh daemon intercepted its first connection");
    }

    /// <summary>The resident set of process <paramref name="pid"/> (VmRSS, KiB), read once it reported running and before any connection.</summary>
    private static long RssKiB(int pid) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
}
