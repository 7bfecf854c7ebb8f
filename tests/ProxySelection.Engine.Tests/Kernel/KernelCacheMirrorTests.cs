using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine.Kernel;
using ProxySelection.Interception.Rules;
using ProxySelection.Negotiation;

namespace ProxySelection.Engine.Tests.Kernel;

/// <summary>What the mirror writes to ipset for the cache's changes (scripted runner, no kernel).</summary>
public sealed class KernelCacheMirrorTests
{
    private static readonly DestinationKey V4 = new([198, 18, 3, 2], 80);
    private static readonly DestinationKey V6 = new(Convert.FromHexString("20010db8000300000000000000000002"), 443);

    [Test]
    public async Task CacheChanges_WrittenAsIpsetRestoreWithLifetimeRoundedDown()
    {
        var (cache, runner, mirror) = Create(intercept: true);
        await using (mirror)
        {
            cache.Set(V4, CapabilityState.TcpOnly);
            await runner.WaitForAsync("add PSEL_TO4 198.18.3.2,tcp:80 timeout 540");
            cache.Set(V6, new CapabilityEntry(CapabilityState.MptcpCapable, 0, CapabilitySource.Observed));
            await runner.WaitForAsync("add PSEL_MP6 2001:db8:3::2,tcp:443 timeout 60");
            cache.Set(V4, CapabilityState.ProbedByOther);
            cache.Remove(V6);
            await runner.WaitForAsync("del PSEL_TO6 2001:db8:3::2,tcp:443");
        }

        var script = runner.Script;
        Assert.That(script, Does.Contain("del PSEL_MP4 198.18.3.2,tcp:80\ndel PSEL_TO4 198.18.3.2,tcp:80\n"));
        Assert.That(script.Split('\n').Count(l => l.StartsWith("add", StringComparison.Ordinal)), Is.EqualTo(2),
            "ProbedByOther depends on the ingress interface: removed from the kernel, not added");
        Assert.That(runner.Commands, Has.All.EqualTo("ipset -exist restore").Or.StartWith("iptables").Or.StartWith("ip6tables"));
    }

    [Test]
    public async Task TcpOnlyWithoutTheInterceptPath_OnlyRemoved()
    {
        var (cache, runner, mirror) = Create(intercept: false);
        await using (mirror)
        {
            cache.Set(V4, CapabilityState.TcpOnly);
            cache.Set(V6, CapabilityState.Unresolved);
            await runner.WaitForAsync("add PSEL_MP6 2001:db8:3::2,tcp:443 timeout 30");
            Assert.That(mirror.InterceptsToward(V4.ToEndPoint()), Is.False);
        }

        Assert.That(runner.Script, Does.Not.Contain("add PSEL_TO4"));
    }

    [Test]
    public async Task InterceptsToward_TrueOnlyForACachedTcpOnlyDestination()
    {
        var (cache, _, mirror) = Create(intercept: true);
        await using (mirror)
        {
            cache.Set(V4, CapabilityState.TcpOnly);
            cache.Set(V6, CapabilityState.MptcpCapable);
            Assert.That(mirror.InterceptsToward(V4.ToEndPoint()), Is.True);
            Assert.That(mirror.InterceptsToward(V6.ToEndPoint()), Is.False);
        }
    }

    [Test]
    public async Task CacheCleared_SetsFlushed()
    {
        var (cache, runner, mirror) = Create(intercept: true);
        await using (mirror)
        {
            cache.Set(V4, CapabilityState.TcpOnly);
            cache.Clear();
            await runner.WaitForAsync("flush PSEL_TO6");
        }

        Assert.That(runner.Script, Does.Contain("flush PSEL_MP4\nflush PSEL_TO4\nflush PSEL_MP6\nflush PSEL_TO6\n"));
    }

    [Test]
    public async Task Resync_FlushesThenWritesWhatTheCacheHoldsWithItsRemainingLife()
    {
        var time = new FakeTimeProvider();
        var cache = NewCache(time);
        cache.Set(V4, CapabilityState.TcpOnly);
        time.Advance(TimeSpan.FromSeconds(100.5));
        var runner = new ScriptedRunner();
        await using (var mirror = new KernelCacheMirror(Rules(true), cache, runner, NullLogger.Instance, new ProxyCounters(), time))
        {
            cache.Observer = mirror;
            mirror.Resync();
            await runner.WaitForAsync("add PSEL_TO4 198.18.3.2,tcp:80 timeout 439");
        }

        Assert.That(runner.Script.IndexOf("flush PSEL_TO4", StringComparison.Ordinal), Is.LessThan(runner.Script.IndexOf("add PSEL_TO4", StringComparison.Ordinal)));
    }

    [Test]
    public async Task ReadCounters_AcceptRulesOfEachSetSummedOverFamilies()
    {
        var counters = new ProxyCounters();
        var runner = new ScriptedRunner
        {
            Listing = """
                Chain PSEL_FAST (1 references)
                    pkts      bytes target     prot opt in     out     source               destination
                       0        0 RETURN     6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp option=19
                       9      540 RETURN     0    --  *      *       0.0.0.0/0            0.0.0.0/0            match bpf 61,...
                       3      180 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0            match-set PSEL_MP4 dst,dst
                       4      240 MARK       0    --  *      *       0.0.0.0/0            0.0.0.0/0            match-set PSEL_TO4 dst,dst socket --nowildcard --transparent MARK xset 0x1/0x1
                       4      240 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0            match-set PSEL_TO4 dst,dst socket --nowildcard --transparent
                """,
        };
        var mirror = new KernelCacheMirror(Rules(true), NewCache(new FakeTimeProvider()), runner, NullLogger.Instance, counters, new FakeTimeProvider());
        await using (mirror)
        {
            await mirror.ReadCountersAsync();
        }

        Assert.That((counters.KernelPassed, counters.KernelIntercepted), Is.EqualTo((3L, 4L)), "the v6 listing names PSEL_MP6/TO6: none of its lines count");
        Assert.That(counters.Snapshot()["kernel_intercepted"], Is.EqualTo(4));
        Assert.That(counters.ToString(), Does.Contain(" kernel_passed=3 kernel_intercepted=4 "));
    }

    private static InterceptionRulesetOptions Rules(bool intercept) =>
        new() { Ports = [80, 443], FastPathPass = true, FastPathIntercept = intercept };

    private static CapabilityCache NewCache(TimeProvider time) => new(new CapabilityCacheOptions
    {
        MptcpCapableTtl = TimeSpan.FromMinutes(10),
        TcpOnlyTtl = TimeSpan.FromMinutes(9),
        UnresolvedTtl = TimeSpan.FromSeconds(30),
        ObservedTtl = TimeSpan.FromSeconds(60),
    }, time, TimeSpan.FromSeconds(2));

    private static (CapabilityCache Cache, ScriptedRunner Runner, KernelCacheMirror Mirror) Create(bool intercept)
    {
        var time = new FakeTimeProvider();
        var cache = NewCache(time);
        var runner = new ScriptedRunner();
        var mirror = new KernelCacheMirror(Rules(intercept), cache, runner, NullLogger.Instance, new ProxyCounters(), time);
        cache.Observer = mirror;
        return (cache, runner, mirror);
    }

    private sealed class ScriptedRunner : ICommandRunner
    {
        private readonly Lock _lock = new();
        private readonly List<string> _commands = [];
        private string _script = "";

        public string Listing { get; init; } = "";

        public List<string> Commands
        {
            get { lock (_lock) { return [.. _commands]; } }
        }

        public string Script
        {
            get { lock (_lock) { return _script; } }
        }

        public Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
        {
            lock (_lock)
            {
                _commands.Add(string.Join(' ', [file, .. args]));
                _script += stdin ?? "";
            }

            return Task.FromResult(new CommandOutcome(0, file == "iptables" ? Listing : "", ""));
        }

        public async Task WaitForAsync(string line)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (!Script.Split('\n').Contains(line))
            {
                Assert.That(DateTime.UtcNow, Is.LessThan(deadline), $"never written: {line}\n{Script}");
                await Task.Delay(10);
            }
        }
    }
}
