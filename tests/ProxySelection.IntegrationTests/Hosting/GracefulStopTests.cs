using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>Issue 6: SIGTERM stops claiming new connections, lets held ones finish within Proxy:DrainTimeout, then removes the rules.</summary>
[TestFixture]
[NonParallelizable]
public sealed class GracefulStopTests
{
    private const int SigTerm = 15;
    private const int Size = 16 * 1024 * 1024;

    [Test]
    public async Task Sigterm_TransferInProgress_CompletesWhileNewConnectionsPassUntouchedAndRulesGoAfterwards()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        var small = lab.WriteFile("small.bin", 16 * 1024);
        await lab.StartNginxAsync();
        var config = Path.Combine(lab.Directory, "proxysel.json");
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Role": "downgrade", "Ports": [80], "DrainTimeout": "40s" } }""");
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", config]).WaitRunningAsync();

        // About 4 s at 4 MB/s: SIGTERM lands mid-transfer.
        var output = Path.Combine(lab.Directory, "download.bin");
        var transfer = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--limit-rate", "4M");
        await ProxyLab.WaitForLineAsync(proxy, "accepted ", "token=");
        Assert.That(proxy.Signal(SigTerm), Is.True);
        var draining = await ProxyLab.WaitForLineAsync(proxy, "proxysel: draining ", "held connection");
        Assert.That(draining, Does.StartWith("proxysel: draining 1 held connection(s) for up to 40 s"), "SIGTERM landed mid-transfer");

        var passedOutput = Path.Combine(lab.Directory, "small.out");
        var passed = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, passedOutput);
        var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(70));
        var exit = await proxy.WaitForExitAsync(TimeSpan.FromSeconds(50));
        TestContext.Progress.WriteLine(proxy.Output);
        var rules = await lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(curl.StdOut, Does.StartWith($"200 {Size} "));
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), "the held transfer finished intact after SIGTERM");
            Assert.That(passed.ExitCode, Is.Zero, passed.StdErr);
            Assert.That(ProxyLab.Sha256Of(passedOutput), Is.EqualTo(small));
            Assert.That(ProxyLab.Lines(proxy, "accepted "), Has.Count.EqualTo(1), "the connection made during the drain never reached the proxy");
            Assert.That(ProxyLab.Lines(proxy, "proxysel: drained"), Has.Count.EqualTo(1));
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.All.Contains("Completed"));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(1));
            Assert.That(exit, Is.Zero);
            Assert.That(rules, Does.Not.Contain("PSEL"), "every rule removed");
        });
    }

    [Test]
    public async Task Sigterm_DrainDeadlinePasses_HeldConnectionAbortedAndRulesRemoved()
    {
        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var config = Path.Combine(lab.Directory, "proxysel.json");
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80], "DrainTimeout": "1s" } }""");
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", config]).WaitRunningAsync();

        // 16 MB at 512 kB/s takes 32 s: far beyond the 1 s drain.
        var transfer = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "download.bin"), TimeSpan.FromSeconds(40), "--limit-rate", "512K");
        await ProxyLab.WaitForLineAsync(proxy, "accepted ", "token=");
        await proxy.StopAsync(TimeSpan.FromSeconds(20));
        var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(50));
        TestContext.Progress.WriteLine(proxy.Output);
        TestContext.Progress.WriteLine($"curl: {curl.ExitCode} {curl.StdOut} {curl.StdErr}");
        var rules = await lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Lines(proxy, "proxysel: drain ended with 1 connection(s) still held"), Has.Count.EqualTo(1), proxy.Output);
            // Whatever the relay had already written into the client socket's send buffer the kernel may still
            // deliver after the process exits, so curl's outcome is not asserted; the relay's is.
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.One.Contains(": Aborted "));
            Assert.That(proxy.ExitCode, Is.Zero);
            Assert.That(rules, Does.Not.Contain("PSEL"));
        });
    }
}

internal static class ProxyProcessExtensions
{
    public static async Task<LabProcess> WaitRunningAsync(this LabProcess process)
    {
        try
        {
            await process.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);
        }
        catch
        {
            TestContext.Progress.WriteLine(process.Output);
            await process.DisposeAsync();
            throw;
        }

        return process;
    }
}
