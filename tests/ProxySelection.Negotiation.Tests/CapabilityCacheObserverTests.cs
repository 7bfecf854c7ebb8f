using Microsoft.Extensions.Time.Testing;

namespace ProxySelection.Negotiation.Tests;

/// <summary>The changes a copy of the cache (the kernel's) hears, in order, with each entry's lifetime.</summary>
public class CapabilityCacheObserverTests
{
    private static DestinationKey Server(int i) => new([198, 18, 5, (byte)i], 443);

    private static (CapabilityCache Cache, Recorder Heard, FakeTimeProvider Time) Create(int maxEntries = 16)
    {
        var time = new FakeTimeProvider();
        var cache = new CapabilityCache(new CapabilityCacheOptions
        {
            MaxEntries = maxEntries,
            MptcpCapableTtl = TimeSpan.FromMinutes(10),
            TcpOnlyTtl = TimeSpan.FromMinutes(9),
            UnresolvedTtl = TimeSpan.FromSeconds(30),
            ObservedTtl = TimeSpan.FromSeconds(60),
        }, time, TimeSpan.FromSeconds(2));
        var heard = new Recorder();
        cache.Observer = heard;
        return (cache, heard, time);
    }

    [Test]
    public void SetRemoveClear_HeardInOrderWithTheLifetimeOfStateAndSource()
    {
        var (cache, heard, _) = Create();

        cache.Set(Server(1), CapabilityState.TcpOnly);
        cache.Set(Server(2), new CapabilityEntry(CapabilityState.MptcpCapable, 0, CapabilitySource.Observed));
        cache.Set(Server(1), CapabilityState.Unresolved);
        cache.Remove(Server(2));
        cache.Remove(Server(3));
        cache.Clear();

        Assert.That(heard.Lines, Is.EqualTo(new[]
        {
            $"set {Server(1).ToEndPoint()} TcpOnly 540s",
            $"set {Server(2).ToEndPoint()} MptcpCapable 60s",
            $"set {Server(1).ToEndPoint()} Unresolved 30s",
            $"removed {Server(2).ToEndPoint()}",
            "cleared",
        }), "removing an absent key changes nothing and is not heard");
    }

    [Test]
    public void FullCache_EvictedLiveEntryHeardBeforeTheNewOne()
    {
        var (cache, heard, _) = Create(maxEntries: 2);
        cache.Set(Server(1), CapabilityState.TcpOnly);
        cache.Set(Server(2), CapabilityState.TcpOnly);

        cache.Set(Server(3), CapabilityState.TcpOnly);

        Assert.That(heard.Lines.Skip(2), Is.EqualTo(new[] { $"removed {Server(1).ToEndPoint()}", $"set {Server(3).ToEndPoint()} TcpOnly 540s" }));
    }

    [Test]
    public void ExpiredEntry_NotHeardWhenDroppedOrEvicted()
    {
        var (cache, heard, time) = Create(maxEntries: 1);
        cache.Set(Server(1), CapabilityState.Unresolved);
        time.Advance(TimeSpan.FromSeconds(31));

        Assert.That(cache.TryGet(Server(1), out _), Is.False);
        cache.Set(Server(1), CapabilityState.Unresolved);
        time.Advance(TimeSpan.FromSeconds(31));
        cache.Set(Server(2), CapabilityState.Unresolved);

        Assert.That(heard.Lines.Count(l => l.StartsWith("removed", StringComparison.Ordinal)), Is.Zero,
            "a copy given the entry's lifetime expired with it already");
    }

    private sealed class Recorder : ICapabilityCacheObserver
    {
        public List<string> Lines { get; } = [];

        public void OnSet(in DestinationKey key, in CapabilityEntry entry, TimeSpan lifetime) =>
            Lines.Add($"set {key.ToEndPoint()} {entry.State} {lifetime.TotalSeconds}s");

        public void OnRemoved(in DestinationKey key) => Lines.Add($"removed {key.ToEndPoint()}");

        public void OnCleared() => Lines.Add("cleared");
    }
}
