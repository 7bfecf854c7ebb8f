namespace ProxySelection.Interception.Rules;

/// <summary>
/// The ipset sets a proxy with one chain prefix may create, by exact name (so cleanup removes these and no other
/// set, even one of a proxy whose prefix starts with this one). ipset names are at most 31 characters; a prefix is at
/// most 16.
/// </summary>
public static class IpSetNames
{
    /// <summary>Handshakes sent to TPROXY (client, client port, destination): see
    /// <see cref="InterceptionRulesetOptions.HandshakeSetSeconds"/>.</summary>
    public static string Handshake(string prefix, bool v6) => $"{prefix}_HS{(v6 ? 6 : 4)}";

    /// <summary>Destinations the capability cache knows as MPTCP servers (the kernel passes their SYNs).</summary>
    public static string KnownMptcp(string prefix, bool v6) => $"{prefix}_MP{(v6 ? 6 : 4)}";

    /// <summary>Destinations the capability cache knows as TCP-only (the kernel intercepts their SYNs).</summary>
    public static string KnownTcpOnly(string prefix, bool v6) => $"{prefix}_TO{(v6 ? 6 : 4)}";

    /// <summary>Handshakes whose SYN/ACK the engine re-signs (client, client port, destination): see
    /// <see cref="InterceptionRulesetOptions.KernelSigned"/>.</summary>
    public static string Resign(string prefix, bool v6) => $"{prefix}_RS{(v6 ? 6 : 4)}";

    /// <summary>Every name <see cref="InterceptionRuleset.CleanupAsync"/> destroys.</summary>
    public static IReadOnlyList<string> All(string prefix) =>
    [
        Handshake(prefix, false), Handshake(prefix, true),
        KnownMptcp(prefix, false), KnownMptcp(prefix, true),
        KnownTcpOnly(prefix, false), KnownTcpOnly(prefix, true),
        Resign(prefix, false), Resign(prefix, true),
    ];
}
