using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests;

/// <summary>
/// Once per test run (applies to every test namespace under ProxySelection.IntegrationTests): requires root, sweeps
/// namespaces left by crashed runs, and at the end deletes every namespace carrying this run's prefix — whether the
/// tests passed or not.
/// </summary>
[SetUpFixture]
public sealed class LabRunFixture
{
    [OneTimeSetUp]
    public async Task RequireRootAndSweepStale()
    {
        if (!LabRun.IsRoot)
        {
            // In CI and outside it alike: these tests need a real kernel and root; never skip them silently.
            Assert.Fail("ProxySelection.IntegrationTests need root (network namespaces, iptables, NFQUEUE). Run them as root, e.g. `sudo dotnet test tests/ProxySelection.IntegrationTests`.");
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var swept = await LabRun.SweepStaleAsync(cts.Token);
        if (swept > 0)
        {
            TestContext.Progress.WriteLine($"lab: removed {swept} namespace(s) left by crashed runs");
        }
    }

    [OneTimeTearDown]
    public async Task DeleteThisRunsNamespaces()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await LabRun.DeleteOwnNamespacesAsync(cts.Token);
    }
}
