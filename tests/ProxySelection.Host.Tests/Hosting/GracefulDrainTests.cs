using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Hosting;

public sealed class GracefulDrainTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Test]
    public async Task WaitForHeldAsync_NothingHeld_TrueAtOnce()
    {
        var drain = new GracefulDrain(TimeProvider.System);

        Assert.That(await drain.WaitForHeldAsync(() => 0, TimeSpan.FromMinutes(5), CancellationToken.None).WaitAsync(Timeout), Is.True);
    }

    [Test]
    public async Task WaitForHeldAsync_LastConnectionCloses_True()
    {
        var drain = new GracefulDrain(TimeProvider.System);
        var reads = 0;

        // Held on the first read, gone on the second: one poll interval.
        Assert.That(await drain.WaitForHeldAsync(() => reads++ == 0 ? 1 : 0, TimeSpan.FromMinutes(5), CancellationToken.None).WaitAsync(Timeout), Is.True);
        Assert.That(reads, Is.EqualTo(2));
    }

    [Test]
    public async Task WaitForHeldAsync_DeadlinePassed_False()
    {
        var drain = new GracefulDrain(TimeProvider.System);

        Assert.That(await drain.WaitForHeldAsync(() => 1, TimeSpan.Zero, CancellationToken.None).WaitAsync(Timeout), Is.False);
    }

    [Test]
    public async Task WaitForHeldAsync_Aborted_False()
    {
        var drain = new GracefulDrain(TimeProvider.System);
        using var abort = new CancellationTokenSource();
        await abort.CancelAsync();

        Assert.That(await drain.WaitForHeldAsync(() => 1, TimeSpan.FromMinutes(5), abort.Token).WaitAsync(Timeout), Is.False);
    }
}
