using System.Runtime.InteropServices;

namespace ProxySelection.Lab;

internal static partial class LabNative
{
    public const int CloneNewNet = 0x40000000;
    public const int SigInt = 2;
    public const int SigKill = 9;
    public const int SigTerm = 15;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int setns(int fd, int nstype);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int sig);

    [LibraryImport("libc")]
    public static partial uint geteuid();
}
