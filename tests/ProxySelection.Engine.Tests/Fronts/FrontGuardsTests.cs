using ProxySelection.Engine.Diagnostics;
using System.Net;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine;
using ProxySelection.Engine.Fronts;

namespace ProxySelection.Engine.Tests.Fronts;

/// <summary>What keeps the host-configured fronts from reaching the host itself or flooding the log, and their handshake bound.</summary>
public sealed class FrontGuardsTests
{
    [TestCase("198.18.0.1", true)]
    [TestCase("2001:db8::1", true)]
    [TestCase("::ffff:198.18.0.1", true)]
    [TestCase("fe80::1", true)]
    [TestCase("198.18.0.2", false)]
    public void LocalAddresses_AddressOfAnInterface_Contained(string address, bool local)
    {
        // fe80::1%2 on an interface: a CONNECT names it without the scope.
        var addresses = new LocalAddresses(TimeProvider.System, () => [IPAddress.Parse("198.18.0.1"), IPAddress.Parse("2001:db8::1"), IPAddress.Parse("fe80::1%2")]);

        Assert.That(addresses.Contains(IPAddress.Parse(address)), Is.EqualTo(local));
    }

    [Test]
    public void LocalAddresses_AddressAdded_SeenAfterTheRefreshIntervalNotBefore()
    {
        var time = new FakeTimeProvider();
        var current = new List<IPAddress> { IPAddress.Parse("198.18.0.1") };
        int reads = 0;
        var addresses = new LocalAddresses(time, () => { reads++; return [.. current]; });
        var added = IPAddress.Parse("198.18.0.9");

        bool before = addresses.Contains(added);
        current.Add(added);
        bool cached = addresses.Contains(added);
        time.Advance(LocalAddresses.RefreshInterval);
        bool after = addresses.Contains(added);

        Assert.Multiple(() =>
        {
            Assert.That(before, Is.False);
            Assert.That(cached, Is.False, "cached between refreshes: one interface read per interval at most");
            Assert.That(after, Is.True);
            Assert.That(reads, Is.EqualTo(2));
        });
    }

    [Test]
    public void LocalAddresses_Invalidated_ReadAgainAtOnce()
    {
        var current = new List<IPAddress>();
        var addresses = new LocalAddresses(new FakeTimeProvider(), () => [.. current]);
        var added = IPAddress.Parse("198.18.0.9");
        addresses.Contains(added);
        current.Add(added);

        addresses.Invalidate();

        Assert.That(addresses.Contains(added), Is.True);
    }

    [Test]
    public void LocalAddresses_FromTheInterfaces_HoldsLoopback()
    {
        var addresses = new LocalAddresses(TimeProvider.System);

        Assert.That(addresses.Contains(IPAddress.Loopback), Is.True);
    }

    [Test]
    public void LogBudget_Flood_BoundedPerSecondThenCountsWhatWasLeftOut()
    {
        var time = new FakeTimeProvider();
        var budget = new LogBudget(time);

        int taken = Enumerable.Range(0, 1000).Count(_ => budget.TryTake(out long _));
        time.Advance(TimeSpan.FromSeconds(1));
        bool next = budget.TryTake(out long skipped);

        Assert.Multiple(() =>
        {
            Assert.That(taken, Is.EqualTo(LogBudget.LinesPerWindow));
            Assert.That(next, Is.True);
            Assert.That(skipped, Is.EqualTo(1000 - LogBudget.LinesPerWindow));
        });
    }

    [TestCase(1, 16)]
    [TestCase(100, 16)]
    [TestCase(1000, 100)]
    [TestCase(10_000, 256)]
    public void MaxHandshakesFor_Capacity_TenthBetween16And256(int capacity, int expected) =>
        Assert.That(SourceLimits.MaxHandshakesFor(capacity), Is.EqualTo(expected));

    [TestCase("198.18.0.1", "198.18.0.1", true)]
    [TestCase("198.18.0.1", "198.18.0.2", false)]
    [TestCase("198.18.0.1", "::ffff:198.18.0.1", true)]
    [TestCase("2001:db8::1", "2001:db8::ffff:1", true)]
    [TestCase("2001:db8::1", "2001:db8:0:1::1", false)]
    [TestCase("::ffff:198.18.0.1", "::198.18.0.1", false)]
    public void SourceOf_IPv4AddressOrIPv6Slash64_SameSourceOrNot(string a, string b, bool same) =>
        Assert.That(SourceLimits.SourceOf(IPAddress.Parse(a)) == SourceLimits.SourceOf(IPAddress.Parse(b)), Is.EqualTo(same));

    [Test]
    public void TryEnter_SourceAtItsHandshakeBound_RefusedOtherSourceAdmitted()
    {
        var limits = new SourceLimits(maxHandshakes: 4, maxHandshakesPerSource: 2, maxConnectionsPerSource: 10);
        var crowd = IPAddress.Parse("198.18.1.2");
        Assert.Multiple(() =>
        {
            Assert.That(limits.TryEnter(crowd, out _), Is.EqualTo(SourceRefusal.None));
            Assert.That(limits.TryEnter(crowd, out _), Is.EqualTo(SourceRefusal.None));
            Assert.That(limits.TryEnter(crowd, out var refused), Is.EqualTo(SourceRefusal.SourceHandshakes));
            Assert.That(refused, Is.Null);
            Assert.That(limits.TryEnter(IPAddress.Parse("198.18.2.2"), out _), Is.EqualTo(SourceRefusal.None));
        });
    }

    [Test]
    public void TryEnter_GlobalBoundReached_RefusedWhateverTheSource()
    {
        var limits = new SourceLimits(maxHandshakes: 2, maxHandshakesPerSource: 2, maxConnectionsPerSource: 10);
        limits.TryEnter(IPAddress.Parse("198.18.1.2"), out _);
        limits.TryEnter(IPAddress.Parse("198.18.1.3"), out _);
        Assert.That(limits.TryEnter(IPAddress.Parse("198.18.2.2"), out _), Is.EqualTo(SourceRefusal.Handshakes));
    }

    [Test]
    public void EndHandshake_ConnectionStaysCountedUntilDisposedTwiceSafe()
    {
        var limits = new SourceLimits(maxHandshakes: 4, maxHandshakesPerSource: 1, maxConnectionsPerSource: 1);
        var source = IPAddress.Parse("2001:db8::2");
        limits.TryEnter(source, out var slot);
        slot!.EndHandshake();
        slot.EndHandshake();
        var held = limits.CountsOf(source);
        var refusal = limits.TryEnter(source, out _);
        slot.Dispose();
        slot.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(held, Is.EqualTo((0, 1)));
            Assert.That(refusal, Is.EqualTo(SourceRefusal.SourceConnections));
            Assert.That(limits.CountsOf(source), Is.EqualTo((0, 0)));
            Assert.That(limits.Handshakes, Is.Zero);
            Assert.That(limits.TryEnter(source, out _), Is.EqualTo(SourceRefusal.None));
        });
    }

    [Test]
    public void Constructor_PerSourceHandshakesAboveTheGlobalBound_ClampedToIt() =>
        Assert.That(new SourceLimits(16, 64, 100).MaxHandshakesPerSource, Is.EqualTo(16));
}
