using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine.Flows;

namespace ProxySelection.Engine.Tests.Flows;

[TestFixture]
public sealed class IdleTrimTests
{
    [Test]
    public void Due_AfterAFloodAndFiveQuietSecondsWithNothingHeld_OnceThenNotWithinAMinute()
    {
        var time = new FakeTimeProvider();
        var trim = new IdleTrim(time);
        long packets = IdleTrim.MinPackets + 1;

        Assert.That(trim.Due(packets, held: 0), Is.False, "the quiet period starts now");
        time.Advance(IdleTrim.Quiet - TimeSpan.FromMilliseconds(1));
        Assert.That(trim.Due(packets + 10, held: 0), Is.False, "not quiet long enough yet");
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(trim.Due(packets + 20, held: 0), Is.True, "quiet for 5 s after the flood");

        // A second flood at once: not trimmed again within the interval.
        packets += 20 + IdleTrim.MinPackets + 1;
        Assert.That(trim.Due(packets, held: 0), Is.False);
        time.Advance(IdleTrim.Quiet);
        Assert.That(trim.Due(packets, held: 0), Is.False, "within a minute of the last trim");
        time.Advance(IdleTrim.MinInterval);
        Assert.That(trim.Due(packets, held: 0), Is.True, "a minute later");
    }

    [Test]
    public void Due_NeverWithoutAFlood_NorWhilePacketsStillCome_NorWhileASynIsHeld()
    {
        var time = new FakeTimeProvider();
        var trim = new IdleTrim(time);
        Assert.That(trim.Due(IdleTrim.MinPackets - 1, held: 0), Is.False);
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(trim.Due(IdleTrim.MinPackets - 1, held: 0), Is.False, "ordinary traffic: no trim");

        long packets = IdleTrim.MinPackets;
        Assert.That(trim.Due(packets, held: 0), Is.False);
        for (int i = 0; i < 10; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            packets += 1_000; // the flood goes on at 1,000 a second
            Assert.That(trim.Due(packets, held: 0), Is.False, "packets still come");
        }

        for (int i = 0; i < 10; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            Assert.That(trim.Due(packets, held: 1), Is.False, "a SYN is held");
        }
    }
}
