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
    public void FrontLogBudget_Flood_BoundedPerSecondThenCountsWhatWasLeftOut()
    {
        var time = new FakeTimeProvider();
        var budget = new FrontLogBudget(time);

        int taken = Enumerable.Range(0, 1000).Count(_ => budget.TryTake(out long _));
        time.Advance(TimeSpan.FromSeconds(1));
        bool next = budget.TryTake(out long skipped);

        Assert.Multiple(() =>
        {
            Assert.That(taken, Is.EqualTo(FrontLogBudget.LinesPerWindow));
            Assert.That(next, Is.True);
            Assert.That(skipped, Is.EqualTo(1000 - FrontLogBudget.LinesPerWindow));
        });
    }

    [TestCase(1, 16)]
    [TestCase(100, 16)]
    [TestCase(1000, 100)]
    [TestCase(10_000, 256)]
    public void MaxHandshakesFor_Capacity_TenthBetween16And256(int capacity, int expected) =>
        Assert.That(ProxyEngine.MaxHandshakesFor(capacity), Is.EqualTo(expected));
}
