using System.Text.RegularExpressions;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>Issue 4 acceptance: an MPTCP client (curl under mptcpize, two paths) to a TCP-only nginx through the proxy.</summary>
[TestFixture]
[NonParallelizable]
public sealed partial class ProxyDownloadTests
{
    private const int Size = 100 * 1024 * 1024;

    [TestCase(false)]
    [TestCase(true)]
    public async Task MptcpClientToTcpServer_ProxyHoldsConnectionWithTwoSubflows_100MegabytesArriveIntact(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync();
        var output = Path.Combine(lab.Directory, "download.bin");

        var curl = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(120));

        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        TestContext.Progress.WriteLine($"curl (v6={v6}): {curl.StdOut}");
        Assert.That(curl.StdOut, Does.StartWith($"200 {Size} "));
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        var relay = await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        TestContext.Progress.WriteLine(proxy.Output);
        Assert.That(SubflowsRegex().Match(relay).Groups[1].Value, Is.EqualTo("2"), relay);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(ProxyLab.Lines(proxy, "proxysel: stopped").Single());
        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Counter(proxy, "probes_adopted"), Is.EqualTo(1), "the probe became the upstream leg");
            Assert.That(ProxyLab.Counter(proxy, "joins_intercepted"), Is.EqualTo(1), "the second subflow's MP_JOIN");
            Assert.That(ProxyLab.Counter(proxy, "claims_added"), Is.GreaterThanOrEqualTo(1), "the claim on the proxy's SYN/ACK");
            Assert.That(ProxyLab.Counter(proxy, "hook_failures"), Is.Zero);
        });
    }

    [GeneratedRegex(@"subflows=(\d+)")]
    private static partial Regex SubflowsRegex();
}
