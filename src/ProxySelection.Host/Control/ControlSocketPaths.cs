using System.Globalization;

namespace ProxySelection.Host.Control;

/// <summary>
/// The default control socket path, per instance: the chain prefix and the network namespace. /run is shared by the
/// namespaces of a host (<c>ip netns exec</c> does not remount it), so two proxies in two namespaces with default
/// settings would otherwise fight over one path; the daemon and <c>proxysel status</c> in one namespace compute the
/// same one.
/// </summary>
internal static class ControlSocketPaths
{
    public const string Folder = "/run/proxysel";

    private static readonly Lazy<string?> Namespace = new(() => NamespaceId(ReadNamespaceLink()));

    /// <summary>This process's network namespace inode; null where /proc cannot tell it.</summary>
    public static string? CurrentNamespace => Namespace.Value;

    /// <summary><c>/run/proxysel/&lt;prefix&gt;-net&lt;inode&gt;.sock</c>; without the namespace part where /proc cannot tell it.</summary>
    public static string Default(string chainPrefix) => Default(chainPrefix, Namespace.Value);

    public static string Default(string chainPrefix, string? namespaceId) =>
        namespaceId is null ? $"{Folder}/{chainPrefix}.sock" : $"{Folder}/{chainPrefix}-net{namespaceId}.sock";

    /// <summary>The inode from a <c>/proc/self/ns/net</c> link text such as <c>net:[4026531840]</c>; null for anything else.</summary>
    public static string? NamespaceId(string? link)
    {
        const string Prefix = "net:[";
        if (link is null || !link.StartsWith(Prefix, StringComparison.Ordinal) || !link.EndsWith(']'))
        {
            return null;
        }

        var digits = link[Prefix.Length..^1];
        return ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var inode) ? inode.ToString(CultureInfo.InvariantCulture) : null;
    }

    private static string? ReadNamespaceLink()
    {
        try
        {
            return new FileInfo("/proc/self/ns/net").LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
