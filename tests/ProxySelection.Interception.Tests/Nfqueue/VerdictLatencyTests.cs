using Microsoft.Extensions.Time.Testing;
using ProxySelection.Interception.Nfqueue;

namespace ProxySelection.Interception.Tests.Nfqueue;

/// <summary>The held-decision timer: a deferred packet is timed when its late verdict comes, and its table never clogs.</summary>
[TestFixture]
public sealed class VerdictLatencyTests
{
    [Test]
    public void OnLateVerdict_DeferredPacket_RecordsTheHoldTimeOnce()
    {
        var time = new FakeTimeProvider();
        var latency = new VerdictLatency(time);
        latency.Defer(7, time.GetTimestamp());
        time.Advance(TimeSpan.FromMilliseconds(30));

        latency.OnLateVerdict(7, time.GetTimestamp());
        latency.OnLateVerdict(7, time.GetTimestamp());

        Assert.That((latency.Deferred.Count, latency.Deferred.MaxMicroseconds, latency.Pending), Is.EqualTo((1L, 30_000L, 0)));
    }

    [Test]
    public void OnLateVerdict_PacketNeverDeferred_RecordsNothing()
    {
        var time = new FakeTimeProvider();
        var latency = new VerdictLatency(time);
        latency.Defer(1, time.GetTimestamp());

        latency.OnLateVerdict(2, time.GetTimestamp());

        Assert.That((latency.Deferred.Count, latency.Pending), Is.EqualTo((0L, 1)));
    }

    [Test]
    public void Defer_TableFullOfVerdictsThatNeverCame_ForgetsTheStaleOnesAndTimesNewHolds()
    {
        var time = new FakeTimeProvider();
        var latency = new VerdictLatency(time);
        for (uint id = 0; id < VerdictLatency.MaxPending; id++)
        {
            latency.Defer(id, time.GetTimestamp());
        }

        time.Advance(VerdictLatency.StaleAfter);
        latency.Defer(100_000, time.GetTimestamp());
        time.Advance(TimeSpan.FromMilliseconds(5));
        latency.OnLateVerdict(100_000, time.GetTimestamp());

        Assert.That((latency.Pending, latency.Deferred.Count, latency.Deferred.MaxMicroseconds), Is.EqualTo((0, 1L, 5_000L)));
    }

    [Test]
    public void Defer_TableFullOfRecentHolds_KeepsThemAndDropsTheNewEntry()
    {
        var time = new FakeTimeProvider();
        var latency = new VerdictLatency(time);
        for (uint id = 0; id < VerdictLatency.MaxPending; id++)
        {
            latency.Defer(id, time.GetTimestamp());
        }

        time.Advance(TimeSpan.FromSeconds(1));
        latency.Defer(100_000, time.GetTimestamp());
        latency.OnLateVerdict(0, time.GetTimestamp());

        Assert.That((latency.Pending, latency.Deferred.Count), Is.EqualTo((VerdictLatency.MaxPending - 1, 1L)));
    }
}
