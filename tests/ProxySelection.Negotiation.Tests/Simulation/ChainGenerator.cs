using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>Random chains from a seed, so a failing chain is rebuilt from the seed alone.</summary>
internal static class ChainGenerator
{
    /// <summary>
    /// 0–5 proxies (upgraders on the client side, downgraders on the server side, as in hybrid access), one policy
    /// for the operator domain, random priorities (a small range, so ties happen), capacities and end-host
    /// capabilities, and proxies that the way back bypasses (asymmetric routing: they never see the answers to
    /// probes they passed). <paramref name="hostile"/> adds, with some probability each, one non-P-aware proxy and one
    /// middlebox (stripping MP_PROXY, stripping all MPTCP options, losing a probe or a probe's answer).
    /// </summary>
    public static ChainSpec Generate(int seed, bool hostile)
    {
        var random = new Random(seed);
        int proxies = random.Next(0, 6);
        int upgraders = random.Next(0, proxies + 1);
        var policy = (SelectionPolicy)random.Next(0, 3);
        int implicitAt = hostile && proxies > 0 && random.NextDouble() < 0.35 ? random.Next(0, proxies) : -1;
        var hops = new List<HopSpec>();
        for (int i = 0; i < proxies; i++)
        {
            hops.Add(new ProxyHop(
                ProxyId: (byte)(i + 1),
                Role: i < upgraders ? ProxyRole.Upgrade : ProxyRole.Downgrade,
                Policy: policy,
                Priority: (byte)random.Next(0, 4),
                AtCapacity: random.NextDouble() < 0.2,
                Mode: i == implicitAt ? SignalingMode.Implicit : SignalingMode.Explicit,
                ReturnBypasses: random.NextDouble() < 0.15));
        }

        if (hostile && random.NextDouble() < 0.4)
        {
            var behavior = (MiddleboxBehavior)random.Next(0, 4);
            hops.Insert(random.Next(0, hops.Count + 1), new MiddleboxHop(behavior));
        }

        return new ChainSpec(random.NextDouble() < 0.5, random.NextDouble() < 0.5, hops);
    }

    /// <summary>
    /// Beyond the design's assumptions: roles in any order, a policy per proxy, up to two non-P-aware or
    /// foreign-key proxies, up to two middleboxes of any kind (spoofers included), link latency 1–40 ms,
    /// probe timeout 20–400 ms, three connections.
    /// </summary>
    public static ChainSpec Chaos(int seed)
    {
        var random = new Random(seed);
        int proxies = random.Next(0, 6);
        var hops = new List<HopSpec>();
        for (int i = 0; i < proxies; i++)
        {
            hops.Add(new ProxyHop(
                (byte)(i + 1),
                (ProxyRole)random.Next(2),
                (SelectionPolicy)random.Next(3),
                (byte)random.Next(16),
                random.NextDouble() < 0.2,
                random.NextDouble() < 0.25 ? SignalingMode.Implicit : SignalingMode.Explicit,
                random.NextDouble() < 0.05,
                random.NextDouble() < 0.15));
        }

        int boxes = random.Next(0, 3);
        for (int i = 0; i < boxes; i++)
        {
            hops.Insert(random.Next(hops.Count + 1), new MiddleboxHop((MiddleboxBehavior)random.Next(9)));
        }

        return new ChainSpec(random.Next(2) == 0, random.Next(2) == 0, hops)
        {
            LinkLatency = TimeSpan.FromMilliseconds(random.Next(1, 41)),
            ProbeTimeout = TimeSpan.FromMilliseconds(random.Next(20, 401)),
            Connections = 3,
        };
    }
}
