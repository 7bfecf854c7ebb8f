using ProxySelection.Lab.Hostile;

namespace ProxySelection.Lab.Tests.Hostile;

[TestFixture]
public sealed class TokenBucketTests
{
    [Test]
    public void OneSecondInMillisecondSteps_GivesTheRate()
    {
        var bucket = new TokenBucket(20_000, 200);
        long taken = 0;
        for (int ms = 0; ms <= 1000; ms++)
        {
            taken += bucket.Take(TimeSpan.FromMilliseconds(ms), int.MaxValue);
        }

        Assert.That(taken, Is.InRange(19_990, 20_010));
    }

    [Test]
    public void LongPause_SavesNoMoreThanTheBurst()
    {
        var bucket = new TokenBucket(1000, 10);
        Assert.That(bucket.Take(TimeSpan.Zero, 100), Is.EqualTo(1), "one token to start");
        Assert.That(bucket.Take(TimeSpan.FromSeconds(5), 100), Is.EqualTo(10), "the burst, not 5,000");
        Assert.That(bucket.Take(TimeSpan.FromSeconds(5), 100), Is.Zero);
        Assert.That(bucket.UntilNext(), Is.EqualTo(TimeSpan.FromMilliseconds(1)));
    }

    [Test]
    public void Take_NeverGivesMoreThanWanted()
    {
        var bucket = new TokenBucket(1000, 100);
        Assert.That(bucket.Take(TimeSpan.FromSeconds(1), 3), Is.EqualTo(3));
        Assert.That(bucket.Take(TimeSpan.FromSeconds(1), 1000), Is.EqualTo(97));
    }
}
