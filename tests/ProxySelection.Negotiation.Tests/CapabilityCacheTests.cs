using Microsoft.Extensions.Time.Testing;

namespace ProxySelection.Negotiation.Tests;

public class CapabilityCacheTests
{
    private static readonly TimeSpan ProbedByOther = TimeSpan.FromMilliseconds(500);

    private static DestinationKey Server(int i) => new([198, 18, (byte)(i >> 8), (byte)i], 443);

    private static (CapabilityCache Cache, FakeTimeProvider Time) Create(int maxEntries = 16)
    {
        var time = new FakeTimeProvider();
        var options = new CapabilityCacheOptions
        {
            MaxEntries = maxEntries,
            MptcpCapableTtl = TimeSpan.FromMinutes(10),
            TcpOnlyTtl = TimeSpan.FromMinutes(10),
            ProxyBeyondTtl = TimeSpan.FromMinutes(2),
            UnresolvedTtl = TimeSpan.FromSeconds(30),
        };
        return (new CapabilityCache(options, time, ProbedByOther), time);
    }

    [Test]
    public void TryGet_Unknown_MissCounted()
    {
        var (cache, _) = Create();
        Assert.Multiple(() =>
        {
            Assert.That(cache.TryGet(Server(1), out _), Is.False);
            Assert.That(cache.Misses, Is.EqualTo(1));
            Assert.That(cache.Hits, Is.Zero);
        });
    }

    [Test]
    public void Set_ThenTryGet_HitReturnsStateAndProxyId()
    {
        var (cache, _) = Create();
        cache.Set(Server(1), CapabilityState.ProxyBeyond, proxyId: 7);
        Assert.Multiple(() =>
        {
            Assert.That(cache.TryGet(Server(1), out var entry), Is.True);
            Assert.That(entry, Is.EqualTo(new CapabilityEntry(CapabilityState.ProxyBeyond, 7)));
            Assert.That(cache.Hits, Is.EqualTo(1));
        });
    }

    [Test]
    public void Snapshot_LiveEntries_MostRecentFirstWithAgeAndRemaining()
    {
        var (cache, time) = Create();
        cache.Set(Server(1), CapabilityState.TcpOnly);
        time.Advance(TimeSpan.FromSeconds(20));
        cache.Set(Server(2), CapabilityState.ProxyBeyond, proxyId: 3);
        cache.Set(Server(3), CapabilityState.ProbedByOther);
        time.Advance(TimeSpan.FromSeconds(10));

        var items = cache.Snapshot();

        Assert.That(items, Is.EqualTo(new[]
        {
            new CapabilityCacheItem(Server(2), new CapabilityEntry(CapabilityState.ProxyBeyond, 3), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(110)),
            new CapabilityCacheItem(Server(1), new CapabilityEntry(CapabilityState.TcpOnly, 0), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(570)),
        }), "the expired ProbedByOther entry is left out");
        Assert.That(cache.Hits + cache.Misses + cache.Expirations, Is.Zero, "a snapshot counts nothing");
    }

    [Test]
    public void Clear_Entries_AllGoneCountedAndCacheStillWorks()
    {
        var (cache, _) = Create(maxEntries: 4);
        for (int i = 0; i < 6; i++)
        {
            cache.Set(Server(i), CapabilityState.TcpOnly);
        }

        Assert.That(cache.Clear(), Is.EqualTo(4));
        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.Zero);
            Assert.That(cache.Snapshot(), Is.Empty);
            Assert.That(cache.TryPeek(Server(5), out _), Is.False);
        });

        for (int i = 0; i < 5; i++)
        {
            cache.Set(Server(10 + i), CapabilityState.MptcpCapable);
        }

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(4), "the slots are reusable after a flush");
            Assert.That(cache.Snapshot().Select(i => i.Destination), Is.EqualTo(new[] { Server(14), Server(13), Server(12), Server(11) }));
        });
    }

    [TestCase(CapabilityState.MptcpCapable, 600)]
    [TestCase(CapabilityState.TcpOnly, 600)]
    [TestCase(CapabilityState.ProxyBeyond, 120)]
    [TestCase(CapabilityState.Unresolved, 30)]
    [TestCase(CapabilityState.ProbedByOther, 0.5)]
    public void TryGet_AtItsTtl_EntryExpires(CapabilityState state, double ttlSeconds)
    {
        var (cache, time) = Create();
        cache.Set(Server(1), state);
        time.Advance(TimeSpan.FromSeconds(ttlSeconds) - TimeSpan.FromMilliseconds(1));
        Assert.That(cache.TryGet(Server(1), out _), Is.True, "just before the TTL");
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Multiple(() =>
        {
            Assert.That(cache.TryGet(Server(1), out _), Is.False, "at the TTL");
            Assert.That(cache.Expirations, Is.EqualTo(1));
            Assert.That(cache.Count, Is.Zero);
        });
    }

    [Test]
    public void TryGet_DoesNotExtendTheTtl()
    {
        var (cache, time) = Create();
        cache.Set(Server(1), CapabilityState.Unresolved);
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.That(cache.TryGet(Server(1), out _), Is.True);
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(cache.TryGet(Server(1), out _), Is.False);
    }

    [Test]
    public void Set_Again_OverwritesStateAndRestartsTtl()
    {
        var (cache, time) = Create();
        cache.Set(Server(1), CapabilityState.Unresolved);
        time.Advance(TimeSpan.FromSeconds(29));
        cache.Set(Server(1), CapabilityState.TcpOnly);
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.Multiple(() =>
        {
            Assert.That(cache.TryGet(Server(1), out var entry), Is.True);
            Assert.That(entry.State, Is.EqualTo(CapabilityState.TcpOnly));
            Assert.That(cache.Count, Is.EqualTo(1));
        });
    }

    [Test]
    public void Set_WhenFull_EvictsLeastRecentlyUsed()
    {
        var (cache, _) = Create(maxEntries: 3);
        cache.Set(Server(1), CapabilityState.TcpOnly);
        cache.Set(Server(2), CapabilityState.TcpOnly);
        cache.Set(Server(3), CapabilityState.TcpOnly);
        Assert.That(cache.TryGet(Server(1), out _), Is.True, "touch 1: 2 is now the least recently used");
        cache.Set(Server(4), CapabilityState.TcpOnly);
        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(3));
            Assert.That(cache.Evictions, Is.EqualTo(1));
            Assert.That(cache.TryPeek(Server(2), out _), Is.False);
            Assert.That(cache.TryPeek(Server(1), out _), Is.True);
            Assert.That(cache.TryPeek(Server(3), out _), Is.True);
            Assert.That(cache.TryPeek(Server(4), out _), Is.True);
        });
    }

    [Test]
    public void Set_ManyMoreThanCapacity_StaysBoundedAndKeepsTheNewest()
    {
        var (cache, _) = Create(maxEntries: 64);
        for (int i = 0; i < 10_000; i++)
        {
            cache.Set(Server(i), CapabilityState.MptcpCapable);
        }

        Assert.Multiple(() =>
        {
            Assert.That(cache.Count, Is.EqualTo(64));
            Assert.That(cache.Evictions, Is.EqualTo(10_000 - 64));
            Assert.That(Enumerable.Range(10_000 - 64, 64).All(i => cache.TryPeek(Server(i), out _)), Is.True);
        });
    }

    [Test]
    public void Remove_FreesTheSlotForReuse()
    {
        var (cache, _) = Create(maxEntries: 1);
        cache.Set(Server(1), CapabilityState.TcpOnly);
        Assert.That(cache.Remove(Server(1)), Is.True);
        cache.Set(Server(2), CapabilityState.TcpOnly);
        Assert.Multiple(() =>
        {
            Assert.That(cache.Evictions, Is.Zero);
            Assert.That(cache.TryPeek(Server(2), out _), Is.True);
        });
    }

    [Test]
    public void Key_PortIsPartOfTheKey()
    {
        var (cache, _) = Create();
        cache.Set(new DestinationKey([198, 18, 0, 1], 443), CapabilityState.MptcpCapable);
        Assert.That(cache.TryPeek(new DestinationKey([198, 18, 0, 1], 25), out _), Is.False);
    }

    [Test]
    public void Key_IPv4AndIPv6AreDistinctAndRoundTrip()
    {
        byte[] v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        var a = new DestinationKey([198, 18, 0, 1], 443);
        var b = new DestinationKey(v6, 443);
        Assert.Multiple(() =>
        {
            Assert.That(a, Is.Not.EqualTo(b));
            Assert.That(a.ToEndPoint().ToString(), Is.EqualTo("198.18.0.1:443"));
            Assert.That(b.ToEndPoint().ToString(), Is.EqualTo("[2001:db8::1]:443"));
            Assert.That(DestinationKey.From(a.ToEndPoint()), Is.EqualTo(a));
            Assert.That(DestinationKey.From(b.ToEndPoint()), Is.EqualTo(b));
        });
    }

    [Test]
    public void Key_AddressOfWrongLength_Throws()
    {
        Assert.That(() => new DestinationKey([1, 2, 3], 1), Throws.ArgumentException);
    }

    [Test]
    public void TryGet_Hit_DoesNotAllocate()
    {
        var (cache, _) = Create();
        var key = Server(1);
        cache.Set(key, CapabilityState.TcpOnly);
        cache.TryGet(key, out _);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            cache.TryGet(key, out _);
        }

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [Test]
    public void Options_OutOfRange_AreRejected()
    {
        var options = new CapabilityCacheOptions { MaxEntries = 0, TcpOnlyTtl = TimeSpan.Zero, ProxyBeyondTtl = TimeSpan.FromDays(2) };
        Assert.Multiple(() =>
        {
            Assert.That(options.Validate(), Has.Count.EqualTo(3));
            Assert.That(() => new CapabilityCache(options, new FakeTimeProvider(), ProbedByOther), Throws.ArgumentException);
            Assert.That(new CapabilityCacheOptions().Validate(), Is.Empty, "defaults are valid");
        });
    }
}

/// <summary>Where an entry came from decides how long it lives (spec §6), and the source network of a key.</summary>
public class CapabilitySourceTests
{
    private static readonly DestinationKey Server = new([198, 18, 1, 1], 443);

    [TestCase(CapabilityState.MptcpCapable)]
    [TestCase(CapabilityState.TcpOnly)]
    [TestCase(CapabilityState.ProxyBeyond)]
    public void ObservedFact_LivesObservedTtl_AndSnapshotShowsIt(CapabilityState state)
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var cache = new CapabilityCache(new CapabilityCacheOptions { ObservedTtl = TimeSpan.FromSeconds(45) }, time, TimeSpan.FromMilliseconds(500));
        cache.Set(Server, new CapabilityEntry(state, 9, CapabilitySource.Observed));
        time.Advance(TimeSpan.FromSeconds(5));
        var item = cache.Snapshot().Single();
        Assert.Multiple(() =>
        {
            Assert.That(item.Age, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(item.Remaining, Is.EqualTo(TimeSpan.FromSeconds(40)));
            Assert.That(item.Entry.Source, Is.EqualTo(CapabilitySource.Observed));
        });
        time.Advance(TimeSpan.FromSeconds(40));
        Assert.That(cache.TryPeek(Server, out _), Is.False);
    }

    [Test]
    public void ObservedProbedByOther_KeepsTheProbedByOtherTtl()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var cache = new CapabilityCache(new CapabilityCacheOptions(), time, TimeSpan.FromMilliseconds(500));
        Assert.That(cache.TtlOf(new CapabilityEntry(CapabilityState.ProbedByOther, 0, CapabilitySource.Observed, 2)), Is.EqualTo(TimeSpan.FromMilliseconds(500)));
    }

    [TestCase(0.5)]
    [TestCase(121.0)]
    public void Options_ObservedTtlOutside1sToProxyBeyondTtl_Rejected(double seconds)
    {
        var options = new CapabilityCacheOptions { ObservedTtl = TimeSpan.FromSeconds(seconds) };
        Assert.That(options.Validate(), Has.Count.EqualTo(1));
    }

    [Test]
    public void ToPrefix_IPv4Slash24AndIPv6Slash56_DropHostBitsAndPort()
    {
        var v6 = new DestinationKey(Convert.FromHexString("20010db8000012ab00000000000000ff"), 80);
        Assert.Multiple(() =>
        {
            Assert.That(new DestinationKey([198, 18, 7, 99], 1234).ToPrefix(24, 56), Is.EqualTo(new DestinationKey([198, 18, 7, 0], 0)));
            Assert.That(v6.ToPrefix(24, 56), Is.EqualTo(new DestinationKey(Convert.FromHexString("20010db8000012000000000000000000"), 0)));
            Assert.That(v6.ToPrefix(24, 128), Is.EqualTo(new DestinationKey(Convert.FromHexString("20010db8000012ab00000000000000ff"), 0)));
            Assert.That(v6.ToPrefix(24, 72), Is.EqualTo(new DestinationKey(Convert.FromHexString("20010db8000012ab0000000000000000"), 0)));
        });
    }
}
