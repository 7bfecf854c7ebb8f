using ProxySelection.Interception.Nfqueue;
using ProxySelection.IntegrationTests.Interception;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// The engine deducts the time a SYN waited in the queue from its hold (issue 12); that needs NFQA_TIMESTAMP, which the
/// kernel attaches only while some socket asked for receive timestamps (<see cref="NfqueueClient.EnableReceiveTimestamps"/>).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class NfqueueTimestampTests
{
    [Test]
    public async Task QueuedSyn_WithReceiveTimestampsEnabled_CarriesItsReceiveTime()
    {
        using var timestamps = NfqueueClient.EnableReceiveTimestamps();
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(InterceptionScenario.Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(InterceptionScenario.Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(InterceptionScenario.Timeout);
        long stamped = 0;
        long readAt = 0;
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            Interlocked.Exchange(ref stamped, p.TimestampMicroseconds);
            Interlocked.Exchange(ref readAt, (TimeProvider.System.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks / TimeSpan.TicksPerMicrosecond);
            queue.Accept(p.PacketId);
        });

        await s.ConnectAndExchangeAsync(server, v6: false).WaitAsync(InterceptionScenario.Timeout);
        await loop.StopAsync();

        long waited = Interlocked.Read(ref readAt) - Interlocked.Read(ref stamped);
        TestContext.Progress.WriteLine($"NFQA_TIMESTAMP {Interlocked.Read(ref stamped)} µs, read {waited} µs later");
        Assert.Multiple(() =>
        {
            Assert.That(Interlocked.Read(ref stamped), Is.GreaterThan(0), "the kernel attached NFQA_TIMESTAMP");
            Assert.That(waited, Is.InRange(0, 5_000_000), "the receive time, on the same clock, before the handler ran");
        });
    }
}
