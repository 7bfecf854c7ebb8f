// LEAD STUB: replaced by the ksign branch's implementation at merge. Delete this file then.
namespace ProxySelection.Interception.Bpf;

public sealed record KernelSignedOption(byte[] Prefix, int TagLength);

public sealed record KernelSignerConfig
{
    public required byte[] Key { get; init; }
    public KernelSignedOption? SynAck { get; init; }
    public IReadOnlyDictionary<int, KernelSignedOption> Syn { get; init; } = new Dictionary<int, KernelSignedOption>();
}

public readonly record struct KernelSignerCounts(long SynsSigned, long SynAcksSigned, long NoRoom, long Errors);

public sealed class KernelSigner : IDisposable
{
    public static bool TryOpen(string name, KernelSignerConfig config, uint slotMask, out KernelSigner? signer, out string? reason)
    {
        signer = null;
        reason = "stub";
        return false;
    }

    public uint SlotMark(int slot) => (uint)slot << 8;

    public uint ListenerMark => 7u << 8;

    public void Update(KernelSignerConfig config)
    {
    }

    public KernelSignerCounts ReadCounts() => default;

    public string CgroupPath => "";

    public static IReadOnlyList<string> Cleanup(string name) => [];

    public static int AttachedPrograms(string cgroupPath) => 0;

    public void Dispose()
    {
    }
}
