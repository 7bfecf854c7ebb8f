using ProxySelection.Host.Hosting;
using ProxySelection.Host.Proxy;
using ProxySelection.Interception.Rules;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Tests.Hosting;

public sealed class GracefulDrainTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static readonly ProxyEngineOptions Options = new()
    {
        ChainPrefix = "PX",
        KeyRing = new MpProxyKeyRing(1, new byte[32]),
    };

    [Test]
    public async Task StopClaimingAsync_FlushesOnlyTheRawQueueChain_BothFamilies()
    {
        var runner = new RecordingRunner(0);

        await new GracefulDrain(Options, runner, TimeProvider.System).StopClaimingAsync(CancellationToken.None).WaitAsync(Timeout);

        Assert.That(runner.Commands, Is.EqualTo(new[] { "iptables -w -t raw -F PX_QUEUE", "ip6tables -w -t raw -F PX_QUEUE" }));
    }

    [Test]
    public void StopClaimingAsync_ToolFails_ThrowsRulesException()
    {
        var drain = new GracefulDrain(Options, new RecordingRunner(1), TimeProvider.System);

        var e = Assert.ThrowsAsync<InterceptionRulesException>(() => drain.StopClaimingAsync(CancellationToken.None).WaitAsync(Timeout));
        Assert.That(e!.Message, Does.Contain("iptables -t raw -F PX_QUEUE exited 1"));
    }

    [Test]
    public async Task WaitForHeldAsync_NothingHeld_TrueAtOnce()
    {
        var drain = new GracefulDrain(Options, new RecordingRunner(0), TimeProvider.System);

        Assert.That(await drain.WaitForHeldAsync(() => 0, TimeSpan.FromMinutes(5), CancellationToken.None).WaitAsync(Timeout), Is.True);
    }

    [Test]
    public async Task WaitForHeldAsync_LastConnectionCloses_True()
    {
        var drain = new GracefulDrain(Options, new RecordingRunner(0), TimeProvider.System);
        var reads = 0;

        // Held on the first read, gone on the second: one poll interval.
        Assert.That(await drain.WaitForHeldAsync(() => reads++ == 0 ? 1 : 0, TimeSpan.FromMinutes(5), CancellationToken.None).WaitAsync(Timeout), Is.True);
        Assert.That(reads, Is.EqualTo(2));
    }

    [Test]
    public async Task WaitForHeldAsync_DeadlinePassed_False()
    {
        var drain = new GracefulDrain(Options, new RecordingRunner(0), TimeProvider.System);

        Assert.That(await drain.WaitForHeldAsync(() => 1, TimeSpan.Zero, CancellationToken.None).WaitAsync(Timeout), Is.False);
    }

    [Test]
    public async Task WaitForHeldAsync_Aborted_False()
    {
        var drain = new GracefulDrain(Options, new RecordingRunner(0), TimeProvider.System);
        using var abort = new CancellationTokenSource();
        await abort.CancelAsync();

        Assert.That(await drain.WaitForHeldAsync(() => 1, TimeSpan.FromMinutes(5), abort.Token).WaitAsync(Timeout), Is.False);
    }

    private sealed class RecordingRunner(int exitCode) : ICommandRunner
    {
        public List<string> Commands { get; } = [];

        public Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
        {
            Commands.Add(file + " " + string.Join(' ', args));
            return Task.FromResult(new CommandOutcome(exitCode, "", exitCode == 0 ? "" : "boom"));
        }
    }
}
