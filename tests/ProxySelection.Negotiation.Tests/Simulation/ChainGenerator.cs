using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>Random chains from a seed, so a failing chain is rebuilt from the seed alone.</summary>
internal static class ChainGenerator
{
    /// <summary>
    /// 0–5 proxies (upgraders on the client side, downgraders on the server side, as in hybrid access), one policy
    /// for the operator domain, random priorities (a small range, so ties happen), capacities and end-host
    /// capabilities. <paramref name="hostile"/> adds, with some probability each, one non-P-aware proxy and one
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
                Mode: i == implicitAt ? SignalingMode.Implicit : SignalingMode.Explicit));
        }

        if (hostile && random.NextDouble() < 0.4)
        {
            var behavior = (MiddleboxBehavior)random.Next(0, 4);
            hops.Insert(random.Next(0, hops.Count + 1), new MiddleboxHop(behavior));
        }

        return new ChainSpec(random.NextDouble() < 0.5, random.NextDouble() < 0.5, hops);
    }
}
